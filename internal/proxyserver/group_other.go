//go:build !unix

package proxyserver

import "os/exec"

// The proxies this package runs (tinyproxy, dante) are Unix programs;
// elsewhere the package only has to compile.

func ownGroup(*exec.Cmd) {}

func terminateGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
