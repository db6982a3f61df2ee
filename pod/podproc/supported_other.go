//go:build linux && !amd64

package podproc

// supported: no entry point is written for this architecture; Start refuses.
const supported = false
