package shim

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
)

// deleteAction cleans up after a dead shim, for one container bundle, and
// prints the DeleteResponse. It works with no shim running.
func deleteAction(ctx context.Context, h Handlers, cfg *Config, stdout io.Writer) error {
	if data, err := os.ReadFile(filepath.Join(cfg.Bundle, "address")); err == nil {
		if sock := socketFromAddress(strings.TrimSpace(string(data))); strings.HasPrefix(sock, "/") {
			cfg.SocketPath = sock
		}
	}
	// A shim that still answers owns its pod: only the container is cleaned.
	cfg.ShimAlive = cfg.SocketPath != "" && alive(cfg.SocketPath)
	msg, err := h.Delete(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.SocketPath != "" && !cfg.ShimAlive {
		os.Remove(cfg.SocketPath)
	}
	out, err := proto.Marshal(msg)
	if err != nil {
		return fmt.Errorf("marshal delete response: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}
