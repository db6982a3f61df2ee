package cgroup

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// scratch is what reading one cgroup's metrics needs, reused from call to
// call: the path being opened and the content of the file last read. A
// poll reads some forty small files; through os.ReadFile each cost a file,
// a path, a buffer and a string, every second for every container.
type scratch struct {
	path []byte // NUL-terminated, for the system call
	data []byte // the file last read
	link []byte // the target of the link last read
	// The block device last named (see deviceName): entries of a device
	// come together.
	dev     [2]uint64
	devName []byte
	devOK   bool
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
const atFDCWD = ^uintptr(99)

// scratches keeps a few scratches for the next calls: metrics of the
// containers of a pod are read one after the other, seldom at once.
var scratches = make(chan *scratch, 2)

func getScratch() *scratch {
	select {
	case s := <-scratches:
		s.devOK = false
		return s
	default:
		return &scratch{path: make([]byte, 0, 256), data: make([]byte, 0, 4096), link: make([]byte, 0, 256), devName: make([]byte, 0, 32)}
	}
}

func putScratch(s *scratch) {
	select {
	case scratches <- s:
	default:
	}
}

// setPath makes dir/name the path to open, name being the concatenation
// of its parts.
func (s *scratch) setPath(dir string, name ...string) {
	s.path = append(s.path[:0], dir...)
	if len(name) > 0 {
		s.path = append(s.path, '/')
	}
	for _, part := range name {
		s.path = append(s.path, part...)
	}
	s.path = append(s.path, 0)
}

// pathString is the path last set, for error messages.
func (s *scratch) pathString() string { return string(s.path[:len(s.path)-1]) }

// read reads dir/name (its parts concatenated) whole into s.data and
// returns it; valid until the next read. A file that is not there (or whose cgroup went away while it was
// read: ENODEV) fails with an error cgroupFileMissing knows, without
// allocating: missing files are the normal case for controllers or kernel
// features a machine lacks.
func (s *scratch) read(dir string, name ...string) ([]byte, error) {
	s.setPath(dir, name...)
	var fd uintptr
	for {
		r, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&s.path[0])),
			uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil, s.fail(errno)
		}
		fd = r
		break
	}
	defer unix.Close(int(fd))
	s.data = s.data[:0]
	for {
		if len(s.data) == cap(s.data) {
			s.data = append(s.data, 0)[:len(s.data)]
		}
		n, err := unix.Read(int(fd), s.data[len(s.data):cap(s.data)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, s.fail(err.(unix.Errno))
		}
		if n == 0 {
			return s.data, nil
		}
		s.data = s.data[:len(s.data)+n]
	}
}

// fail is the error of a read of the path last set: the bare errno when it
// means the file is missing, which the callers pass over; the path and the
// errno otherwise.
func (s *scratch) fail(errno unix.Errno) error {
	if errno == unix.ENOENT || errno == unix.ENODEV {
		return errno
	}
	return fmt.Errorf("read %s: %w", s.pathString(), errno)
}

// exists says whether path is there (a symbolic link counts as itself).
// Like os.Lstat, only "not there" is false: a path that cannot be looked
// at for another reason is taken to exist.
func (s *scratch) exists(path string) bool {
	s.setPath(path)
	var st unix.Stat_t
	for {
		_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, atFDCWD, uintptr(unsafe.Pointer(&s.path[0])),
			uintptr(unsafe.Pointer(&st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		return errno != unix.ENOENT
	}
}

// readlink reads the target of the link at path into s.link; "" if it
// cannot.
func (s *scratch) readlink(path []byte) []byte {
	s.path = append(append(s.path[:0], path...), 0)
	s.link = s.link[:cap(s.link)]
	for {
		n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, atFDCWD, uintptr(unsafe.Pointer(&s.path[0])),
			uintptr(unsafe.Pointer(&s.link[0])), uintptr(len(s.link)), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil
		}
		if int(n) == len(s.link) { // maybe cut: try a larger buffer
			s.link = make([]byte, 2*len(s.link))
			continue
		}
		return s.link[:n]
	}
}
