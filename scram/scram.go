// Package scram provides SCRAM (RFC 5802, RFC 7677) as an MQTT 5 enhanced
// authentication method for eventloop.Options.Authenticator: the password
// never crosses the wire, and the client checks that the broker knows it
// too. The cryptography is github.com/xdg-go/scram's.
//
// MQTT 5 leaves the methods to brokers; "SCRAM-SHA-256" (and -1, -512) in
// the Authentication Method with the SCRAM messages as Authentication Data
// is what EMQX, HiveMQ's extensions and mqtttest implement.
package scram

import (
	"context"
	"errors"
	"fmt"

	xdg "github.com/xdg-go/scram"
)

// ErrServerProof: the broker's final message did not prove that it knows
// the password (or the exchange broke off): the connection must not be
// trusted.
var ErrServerProof = errors.New("scram: the broker did not prove it knows the password")

// Client is the client side of SCRAM for one user. It implements
// eventloop.Authenticator: each Start begins a new conversation (at every
// CONNECT and re-authentication). A Client is used by one loop at a time.
type Client struct {
	method string
	client *xdg.Client
	conv   *xdg.ClientConversation
}

// SHA256 returns a SCRAM-SHA-256 client for username and password (both
// normalized with SASLprep).
func SHA256(username, password string) (*Client, error) {
	return newClient("SCRAM-SHA-256", xdg.SHA256, username, password)
}

// SHA512 returns a SCRAM-SHA-512 client.
func SHA512(username, password string) (*Client, error) {
	return newClient("SCRAM-SHA-512", xdg.SHA512, username, password)
}

// SHA1 returns a SCRAM-SHA-1 client, for brokers that offer nothing
// better.
func SHA1(username, password string) (*Client, error) {
	return newClient("SCRAM-SHA-1", xdg.SHA1, username, password)
}

func newClient(method string, h xdg.HashGeneratorFcn, username, password string) (*Client, error) {
	c, err := h.NewClient(username, password, "")
	if err != nil {
		// xdg's error never echoes the password.
		return nil, fmt.Errorf("scram: preparing user name or password: %w", err)
	}
	return &Client{method: method, client: c}, nil
}

// Method returns the Authentication Method: "SCRAM-SHA-256", ...
func (c *Client) Method() string { return c.method }

// Start begins a conversation and returns the client-first message.
func (c *Client) Start(context.Context) ([]byte, error) {
	c.conv = c.client.NewConversation()
	first, err := c.conv.Step("")
	if err != nil {
		return nil, fmt.Errorf("scram: %w", err)
	}
	return []byte(first), nil
}

// Continue answers the server-first message with the client-final message
// (the proof).
func (c *Client) Continue(_ context.Context, data []byte) ([]byte, error) {
	if c.conv == nil || c.conv.Done() {
		return nil, errors.New("scram: broker continued a conversation that is over")
	}
	final, err := c.conv.Step(string(data))
	if err != nil {
		return nil, fmt.Errorf("scram: %w", err)
	}
	return []byte(final), nil
}

// Finish checks the server-final message: the broker's proof.
func (c *Client) Finish(_ context.Context, data []byte) error {
	if c.conv == nil {
		return fmt.Errorf("%w: no conversation", ErrServerProof)
	}
	conv := c.conv
	c.conv = nil
	if !conv.Done() {
		if _, err := conv.Step(string(data)); err != nil {
			return fmt.Errorf("%w: %w", ErrServerProof, err)
		}
	}
	if !conv.Valid() {
		return ErrServerProof
	}
	return nil
}
