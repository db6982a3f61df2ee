package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// deleteAction cleans up after a dead shim, for one container bundle, and
// prints the DeleteResponse. It works with no shim running.
func deleteAction(ctx context.Context, h Handlers, cfg *Config, stdout io.Writer) error {
	if sock := bundleSocket(cfg.Bundle); strings.HasPrefix(sock, "/") {
		cfg.SocketPath = sock
	}
	// A shim that may still serve the pod owns it: only the container is
	// cleaned. Its socket and the pod's state stay unless no shim listens.
	cfg.ShimAlive = cfg.SocketPath != "" && probeShim(cfg.SocketPath) != shimGone
	msg, err := h.Delete(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.SocketPath != "" && !cfg.ShimAlive {
		os.Remove(cfg.SocketPath)
	}
	out, err := wire.Marshal(msg)
	if err != nil {
		return fmt.Errorf("marshal delete response: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}

// bundleSocket is the socket of the shim that served a bundle: from the
// address file start writes, or, for a container of a sandbox that answered
// bootstrap version 3 (no start ran in its bundle), from the bootstrap.json
// containerd writes there.
func bundleSocket(bundle string) string {
	if data, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
		return socketFromAddress(strings.TrimSpace(string(data)))
	}
	data, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json"))
	if err != nil {
		return ""
	}
	var params struct {
		Address  string `json:"address"`
		Protocol string `json:"protocol"`
	}
	if json.Unmarshal(data, &params) != nil || params.Protocol != "ttrpc" {
		return ""
	}
	return socketFromAddress(params.Address)
}
