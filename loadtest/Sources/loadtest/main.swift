// Keep to one call: top-level closures here would be @MainActor (see DESIGN.md).
LoadtestCommand.main()
