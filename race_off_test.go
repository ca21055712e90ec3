//go:build !race

package ginsse_test

// raceOn tells that the race detector is on: tests that run a number of
// seeds or rounds run fewer, as each costs several times more.
const raceOn = false
