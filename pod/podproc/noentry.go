//go:build linux

package podproc

import (
	"encoding/binary"
	"fmt"
	"os"
)

// A binary linked without the entry point runs the Go runtime when it is
// started as the pod's process, and gets here: it says so on the report pipe
// and on stderr, and exits, before main can mistake its arguments for the
// shim's. The pod never runs with a process that is not in its namespaces.
func init() {
	if len(os.Args) < 3 || os.Args[0] != Marker {
		return
	}
	var report [8]byte
	binary.NativeEndian.PutUint32(report[0:4], stepNoEntry)
	os.NewFile(3, "report").Write(report[:])
	fmt.Fprintf(os.Stderr, "containerd-shim-pod-v2: %v\n", ErrNoEntry)
	os.Exit(1)
}
