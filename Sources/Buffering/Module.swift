// Buffering: see ../shared/DESIGN.md
