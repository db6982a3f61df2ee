// faultyrunc is a runc that fails where a test wants it to: a wrapper around
// the real runc (on $PATH) given to the shim as its runtime binary
// (BinaryName). Its mode is the part of its name after the first dot, so one
// binary serves every mode through symlinks:
//
//	faultyrunc.fail-CMD     fails the runc command CMD (create, start, exec,
//	                        kill, delete, pause, resume, update, ps) before
//	                        doing anything, logging an error as runc does
//	faultyrunc.bad-console  runs create or exec for real, with a console
//	                        socket of its own, and hands the shim's console
//	                        socket /dev/null instead of the pty master: the
//	                        process exists, the shim's next step fails
//	faultyrunc.no-rro       answers `features` without "rro" among its mount
//	                        options, like a runtime that cannot make
//	                        recursively read-only mounts
//
// Any other command, or mode, is passed to runc unchanged; so is every
// command once a file named like the wrapper with ".healed" appended exists
// (the fault is gone: a test heals its wrapper to retry).
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// inherited is what the shim gave past stdio (exec's spec pipe as fd 3),
// found before the wrapper opens anything of its own.
var inherited = extraFiles()

func main() {
	mode := ""
	if _, m, ok := strings.Cut(filepath.Base(os.Args[0]), "."); ok {
		mode = m
	}
	if _, err := os.Stat(os.Args[0] + ".healed"); err == nil {
		mode = ""
	}
	args := os.Args[1:]
	cmd := command(args)
	switch {
	case mode == "fail-"+cmd:
		fail(args, fmt.Sprintf("%s failed: injected by faultyrunc", cmd))
	case mode == "bad-console" && (cmd == "create" || cmd == "exec") && flag(args, "--console-socket") != "":
		os.Exit(badConsole(args))
	case mode == "no-rro" && cmd == "features":
		os.Exit(featuresWithout(args, "rro"))
	}
	os.Exit(runc(args))
}

// command is runc's subcommand: the first argument that is not a global
// flag or a global flag's value.
func command(args []string) string {
	withValue := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if withValue[a] {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// fail logs msg to runc's JSON log, as runc does, and exits 1.
func fail(args []string, msg string) {
	if log := flag(args, "--log"); log != "" {
		if f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			line, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().Format(time.RFC3339)})
			f.Write(append(line, '\n'))
			f.Close()
		}
	}
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

// runc runs the real runc with args, on the wrapper's stdio.
func runc(args []string) int {
	c := exec.Command("runc", args...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	c.ExtraFiles = inherited
	if err := c.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "faultyrunc:", err)
		return 1
	}
	return 0
}

// featuresWithout prints runc's features without the mount option drop.
func featuresWithout(args []string, drop string) int {
	out, err := exec.Command("runc", args...).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultyrunc: runc features:", err)
		return 1
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		fmt.Fprintln(os.Stderr, "faultyrunc: runc features:", err)
		return 1
	}
	var kept []any
	for _, o := range doc["mountOptions"].([]any) {
		if o != drop {
			kept = append(kept, o)
		}
	}
	doc["mountOptions"] = kept
	b, _ := json.MarshalIndent(doc, "", "    ")
	os.Stdout.Write(append(b, '\n'))
	return 0
}

// extraFiles passes on the fds the shim gave past stdio (exec's spec pipe).
func extraFiles() []*os.File {
	var files []*os.File
	for fd := 3; fd < 16; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			break
		}
		files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd)))
	}
	return files
}

// badConsole runs runc with a console socket of its own, takes the pty
// master runc sends, and gives the shim /dev/null in its place.
func badConsole(args []string) int {
	shimSocket := flag(args, "--console-socket")
	dir, err := os.MkdirTemp("", "faultyrunc-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultyrunc:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	own := filepath.Join(dir, "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: own, Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultyrunc:", err)
		return 1
	}
	defer l.Close()
	masters := make(chan *os.File, 1)
	go func() { masters <- receiveFile(l) }()
	for i, a := range args {
		if a == "--console-socket" {
			args[i+1] = own
		}
	}
	code := runc(args)
	if code != 0 {
		return code
	}
	select {
	case m := <-masters:
		if m != nil {
			defer m.Close() // the process's terminal stays open until the wrapper exits
		}
	case <-time.After(10 * time.Second):
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 1
	}
	defer null.Close()
	conn, err := net.Dial("unix", shimSocket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultyrunc: dial the shim's console socket:", err)
		return 1
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	if _, _, err := uc.WriteMsgUnix([]byte("/dev/null"), unix.UnixRights(int(null.Fd())), nil); err != nil {
		fmt.Fprintln(os.Stderr, "faultyrunc: send to the shim's console socket:", err)
		return 1
	}
	return 0
}

func receiveFile(l *net.UnixListener) *os.File {
	conn, err := l.AcceptUnix()
	if err != nil {
		return nil
	}
	defer conn.Close()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil
	}
	return os.NewFile(uintptr(fds[0]), "pty-master")
}
