"""One module per studio tab; each exposes `build(studio)` and only wires widgets to `retrikt` functions."""
