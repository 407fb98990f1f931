"""Generated code for the tilefn.v1 protocol (see the .proto files beside it)."""
