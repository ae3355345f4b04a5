JSONReference.main()
