package main

import (
	"bufio"
	"io"
	"net"
	"testing"
)

func TestSample(t *testing.T) {
	for _, tc := range []struct {
		data string
		seq  int
		ns   int64
	}{
		{"12 1764678000000000000 xxxx", 12, 1764678000000000000},
		{"0 5", 0, 5},
		{"7", 7, 0},
		{"7x 5", 7, 0},
		{"hello", -1, 0},
		{"", -1, 0},
		{"4294967296 1", -1, 0}, // beyond any seq
		{"3 9223372036854775807", 3, 9223372036854775807},
		{"3 9223372036854775808", 3, 0}, // beyond int64
	} {
		seq, ns := sample([]byte(tc.data))
		if seq != tc.seq || ns != tc.ns {
			t.Errorf("sample(%q) = %d, %d; want %d, %d", tc.data, seq, ns, tc.seq, tc.ns)
		}
	}
}

// The body after the headers starts with what the header reader had
// already buffered, and goes on with the connection.
func TestAfterHeaders(t *testing.T) {
	server, client := net.Pipe()
	go func() {
		_, _ = io.WriteString(server, "HTTP/1.0 200 OK\r\n\r\n: ok\n\ndata: 1\n\n")
		_, _ = io.WriteString(server, "data: 2\n\n")
		server.Close()
	}()
	br := bufio.NewReader(client)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	body, err := io.ReadAll(afterHeaders(br, client))
	if err != nil {
		t.Fatal(err)
	}
	if want := ": ok\n\ndata: 1\n\ndata: 2\n\n"; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}
