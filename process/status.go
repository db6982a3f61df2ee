package process

import "fmt"

// Status is where a process is in its life:
//
//	Created --start--> Running --pause--> Pausing --> Paused --resume--> Running
//	any but Deleted --exit--> Stopped
//	Created, Stopped --delete--> Deleted
//
// An exec is Created from when it is added until it starts. Pausing is the
// time of the runtime's pause call; a pause that fails goes back to Running.
type Status int

// The states; the zero value is Created.
const (
	Created Status = iota
	Running
	Pausing
	Paused
	Stopped
	Deleted
)

func (s Status) String() string {
	switch s {
	case Created:
		return "created"
	case Running:
		return "running"
	case Pausing:
		return "pausing"
	case Paused:
		return "paused"
	case Stopped:
		return "stopped"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("status(%d)", int(s))
}
