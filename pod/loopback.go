//go:build linux

package pod

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// loopbackUp brings up lo in the network namespace pinned at netPath (a new
// network namespace has it down). Host root may setns into a network
// namespace owned by a child user namespace: it holds every capability there.
func loopbackUp(netPath string) error {
	f, err := os.Open(netPath)
	if err != nil {
		return fmt.Errorf("bring lo up in %s: %w", netPath, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread goes into the pod's network namespace and comes back.
		// Should it fail to come back, it stays locked: the Go runtime ends
		// the thread with the goroutine, or wedges it if it is the main
		// thread, which then keeps the namespace alive; /proc/self/ns/net
		// shows the main thread's. Hence the return trip, not a dying thread.
		runtime.LockOSThread()
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer back.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		err = setLoopbackUp()
		if rerr := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); rerr != nil {
			errc <- errors.Join(err, fmt.Errorf("return to the shim's network namespace: %w", rerr))
			return // locked for good
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("bring lo up in %s: %w", netPath, err)
	}
	return nil
}

// setLoopbackUp runs on a locked thread in the namespace.
func setLoopbackUp() error {
	if err := fault.Check("pod.loopback"); err != nil {
		return err
	}
	// A socket belongs to the network namespace it was created in.
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(sock)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set flags: %w", err)
	}
	return nil
}
