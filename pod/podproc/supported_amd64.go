//go:build linux && amd64

package podproc

// supported: entry_linux_amd64.s is the entry point's code.
const supported = true
