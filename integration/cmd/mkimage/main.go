// mkimage writes the integration suite's busybox image as an OCI layout archive that `ctr images import` accepts.
//
//	go run ./cmd/mkimage -o /tmp/podtest.tar [-busybox /bin/busybox] [-name docker.io/library/podtest:latest] [-pause]
//
// -pause writes the pause image instead (image.PauseName, whose command is image.PauseCmd), CRI's sandbox image.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/podv2/containerd-shim-pod-v2/integration/image"
)

func main() {
	out := flag.String("o", "", "archive to write (required)")
	busybox := flag.String("busybox", image.DefaultBusybox, "statically linked busybox binary")
	name := flag.String("name", image.DefaultName, "image reference")
	pause := flag.Bool("pause", false, "write the pause image (CRI's sandbox image)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o ARCHIVE [-busybox PATH] [-name REF]")
		os.Exit(2)
	}
	o := image.Options{Busybox: *busybox, Name: *name}
	if *pause {
		o.Name, o.Cmd = image.PauseName, image.PauseCmd
	}
	r, err := image.WriteFile(*out, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s (%d layers, %d applets)\n", r.Name, r.Manifest.Digest, len(r.Layers), len(r.Applets))
}
