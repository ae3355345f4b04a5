HotPath.main()
