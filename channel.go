package ginsse

import (
	"fmt"
	"slices"

	"github.com/gin-gonic/gin"
)

const maxChannelLen = 200

// validName reports whether s holds only letters, digits and _ . : -.
// Everything else, wildcards included, is refused before it reaches Redis.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidateChannel reports whether name can be a channel: 1 to 200
// letters, digits or _ . : -. It returns an error wrapping
// ErrInvalidChannel otherwise, the same error the stream route and Send
// give, so an application can check a name before it stores it.
func ValidateChannel(name string) error { return validateChannel(name) }

// validateChannel checks a channel name as clients and Send give it.
func validateChannel(name string) error {
	if name == "" || len(name) > maxChannelLen || !validName(name) {
		return fmt.Errorf("%w: %q: a channel name is 1 to %d letters, digits or _ . : -", ErrInvalidChannel, truncate(name, 40), maxChannelLen)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// streamRequest is what the resolver learned about a stream request before
// any guard ran.
type streamRequest struct {
	channels []string
	err      error
}

type requestKey struct{}

// resolve parses the request's channels once and stores the result where
// Channels finds it. It never aborts: the stream handler answers 400 for an
// invalid request, after the group's own middleware (logging included) ran.
func (s *Sender) resolve(c *gin.Context) {
	chans, err := s.parseChannels(c)
	c.Set(requestKey{}, &streamRequest{channels: chans, err: err})
}

func (s *Sender) parseChannels(c *gin.Context) ([]string, error) {
	values := c.QueryArray(s.opts.ChannelParam)
	if len(values) == 0 {
		return []string{s.opts.DefaultChannel}, nil
	}
	chans := make([]string, 0, min(len(values), s.opts.MaxChannels))
	for _, v := range values {
		if err := validateChannel(v); err != nil {
			return nil, err
		}
		if slices.Contains(chans, v) {
			continue // duplicates collapse, and do not count against the cap
		}
		if len(chans) == s.opts.MaxChannels {
			return nil, fmt.Errorf("%w: more than %d channels named", ErrInvalidChannel, s.opts.MaxChannels)
		}
		chans = append(chans, v)
	}
	slices.Sort(chans) // the order of the positions in a Last-Event-ID
	return chans, nil
}

// Channels returns exactly the channels the stream request in c will
// subscribe to, sorted, duplicates removed, for guard middleware on the group
// passed to Register. It returns ErrInvalidChannel when the request names
// an invalid channel (the stream handler then answers 400), and
// ErrNotStream outside a stream route.
func Channels(c *gin.Context) ([]string, error) {
	v, ok := c.Get(requestKey{})
	if !ok {
		return nil, ErrNotStream
	}
	r := v.(*streamRequest)
	if r.err != nil {
		return nil, r.err
	}
	return append([]string(nil), r.channels...), nil
}
