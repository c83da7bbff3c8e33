package state

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite ../testdata/session-v1.mqls")

// goldenV1 is a session saved in format version 1 and kept in the
// repository: files written by released versions must keep loading.
const goldenV1 = "../testdata/session-v1.mqls"

// TestGoldenSessionV1 loads the version 1 fixture, checks it equals the
// rich session it was made from, and that saving it again gives the same
// bytes (so the format did not drift).
func TestGoldenSessionV1(t *testing.T) {
	var fresh bytes.Buffer
	if err := richSession(t).s.Save(&fresh); err != nil {
		t.Fatal(err)
	}
	if *updateGolden {
		if err := os.WriteFile(goldenV1, fresh.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenV1)
	if err != nil {
		t.Fatalf("%v (create it with go test ./state -run TestGoldenSessionV1 -update-golden)", err)
	}
	loaded, err := Load(bytes.NewReader(golden))
	if err != nil {
		t.Fatalf("the version 1 fixture no longer loads: %v", err)
	}
	var again bytes.Buffer
	if err := loaded.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), golden) {
		t.Fatal("saving the loaded fixture gives other bytes: the format changed without a new version")
	}
	if !bytes.Equal(fresh.Bytes(), golden) {
		t.Fatal("the fixture session now saves differently: bump FormatVersion and keep loading version 1")
	}
	if loaded.InFlight() == 0 || loaded.Queued() == 0 || loaded.AwaitingRelease() == 0 || len(loaded.Subscriptions()) == 0 {
		t.Fatalf("fixture lacks entries: %d in flight, %d queued, %d awaiting release, %d subscriptions",
			loaded.InFlight(), loaded.Queued(), loaded.AwaitingRelease(), len(loaded.Subscriptions()))
	}
}
