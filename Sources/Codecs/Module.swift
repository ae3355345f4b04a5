// Codecs: see ../shared/DESIGN.md
