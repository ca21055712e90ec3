package sseclient

// BufferSize is how much memory r's line buffer holds.
func BufferSize(r *Reader) int { return cap(r.lines.buf) }
