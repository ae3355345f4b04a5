// Keep to one call: top-level closures here would be @MainActor (see DESIGN.md).
Harness.main(CommandLine.arguments)
