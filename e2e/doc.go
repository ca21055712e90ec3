// Package e2e holds the end-to-end tests: the demo in _example driven by
// headless Chromium, so the page, the stream and the browser's own
// EventSource are checked together. It has no code of its own.
package e2e
