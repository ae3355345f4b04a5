// Routing: see ../shared/DESIGN.md
