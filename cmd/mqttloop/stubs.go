package main

import (
	"context"
	"fmt"
	"io"
)

func notYet(name string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		fmt.Fprintf(stderr, "mqttloop %s: not built yet\n", name)
		return exitError
	}
}

var (
	runBench = notYet("bench")
)
