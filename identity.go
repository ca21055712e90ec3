package ginsse

import (
	"time"

	"github.com/gin-gonic/gin"
)

// Identity is who a stream serves and until when. A guard — the stream
// group's middleware — sets it with SetIdentity before the stream opens;
// ginsse logs it when it ends the stream, and ends the stream when
// ExpiresAt passes. It costs nothing per event.
type Identity struct {
	// User is who the stream serves; empty for an anonymous stream.
	User string
	// Tags are what else the guard knows of the stream, such as a
	// session or a tenant.
	Tags []string
	// ExpiresAt, when set, ends the stream with a retry hint once it
	// passes: the browser comes back through the guard, which decides
	// again (a refreshed cookie lets it in; a lapsed one gets the
	// guard's own 401). The stream still answers 200, so a tab is never
	// given up for good. An ExpiresAt already past ends the stream right
	// after it opens.
	ExpiresAt time.Time
}

const identityKey = "ginsse.identity"

// SetIdentity attaches id to the stream that the request opens. Call it
// in a guard, before the stream route runs.
func SetIdentity(c *gin.Context, id Identity) {
	id.Tags = append([]string(nil), id.Tags...)
	c.Set(identityKey, id)
}

// IdentityOf returns the Identity a guard attached to the request, and
// false when none did.
func IdentityOf(c *gin.Context) (Identity, bool) {
	v, ok := c.Get(identityKey)
	if !ok {
		return Identity{}, false
	}
	id, ok := v.(Identity)
	return id, ok
}
