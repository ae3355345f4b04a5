// Relay: see ../shared/DESIGN.md
