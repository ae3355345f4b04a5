// Kept to one call: top-level closures would be inferred @MainActor (DESIGN.md).
TransportEcho.main()
