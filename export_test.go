package ginsse

// Internals exposed to the black-box tests in package ginsse_test.

// EncodeFrame validates and encodes one event as Send and the stream would.
// retry < 0 sends no retry field.
func EncodeFrame(typ, id string, retry int64, data string) ([]byte, error) {
	e := event{typ: typ, id: id, retry: retry, data: data}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return appendFrame(nil, &e), nil
}

// DecodePayload decodes a Redis message as the subscription loop does.
func DecodePayload(raw string) (typ, id string, retry int64, data string) {
	e := decodePayload(raw)
	return e.typ, e.id, e.retry, e.data
}
