package scram

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestPasswordNotInErrors: a password SASLprep refuses is not echoed.
func TestPasswordNotInErrors(t *testing.T) {
	_, err := SHA256("user", "hunter\u0007secret")
	if err == nil {
		t.Fatal("a password with a control character was accepted")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error shows the password: %v", err)
	}
}

// TestFinishWithoutConversation: a broker success without the exchange
// is no proof.
func TestFinishWithoutConversation(t *testing.T) {
	c, err := SHA256("user", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(context.Background(), nil); !errors.Is(err, ErrServerProof) {
		t.Fatalf("Finish before Start: %v", err)
	}
	if _, err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(context.Background(), []byte("v=AAAA")); !errors.Is(err, ErrServerProof) {
		t.Fatalf("Finish after client-first only: %v", err)
	}
	if _, err := c.Continue(context.Background(), []byte("r=x")); err == nil {
		t.Fatal("Continue after the conversation ended succeeded")
	}
	for _, m := range []func(string, string) (*Client, error){SHA1, SHA256, SHA512} {
		c, _ := m("u", "p")
		if !strings.HasPrefix(c.Method(), "SCRAM-SHA-") {
			t.Fatalf("method %q", c.Method())
		}
	}
}
