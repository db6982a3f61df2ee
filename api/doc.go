// Package api holds, in its sub-packages, the messages of the protos the
// shim speaks (containerd's task, event, type, option and bootstrap protos,
// the sandbox API, and the few well-known types they use) as plain Go
// structs: the fields, names and protobuf struct tags of the code
// protoc-gen-go generates, without its registration or reflection.
//
// Package wire codes them from their tags. Linking protoc-gen-go's packages
// instead built, in every shim process at start, the descriptors of every
// message of those protos (and the regular expressions of go-digest, which
// containerd's types package imports): about 0.2 MB of a serving shim's 0.5
// MB of live heap, and a third of a millisecond of each process start.
//
// The sub-packages are generated from containerd's generated packages by
// TestGenerated (go test ./api -run TestGenerated -update), which also
// fails when they differ from what it would write; wire's tests check that
// each struct codes byte for byte as the message it mirrors.
package api
