package eventloop_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
)

func ExampleUserProps() {
	props := eventloop.UserProps("trace-id", "4bf92f", "origin", "sensor-7")
	origin, _ := props.Get("origin")
	fmt.Println(props.Len(), origin)
	for name, value := range props.All() {
		fmt.Println(name, "=", value)
	}
	// Add returns a new list; props is unchanged.
	fmt.Println(props.Add("origin", "relay"))
	fmt.Println(props)
	// Output:
	// 2 sensor-7
	// trace-id = 4bf92f
	// origin = sensor-7
	// [{trace-id 4bf92f} {origin sensor-7} {origin relay}]
	// [{trace-id 4bf92f} {origin sensor-7}]
}

func TestUserProperties(t *testing.T) {
	var zero eventloop.UserProperties
	if zero.Len() != 0 || zero.Pairs() != nil || zero.String() != "[]" || zero != eventloop.UserProps() {
		t.Fatalf("zero value: %v", zero)
	}
	if _, ok := zero.Get("x"); ok {
		t.Fatal("Get on an empty list")
	}
	u := eventloop.UserProps("a", "1", "", "", "a", "2")
	want := []eventloop.UserProperty{{Key: "a", Value: "1"}, {}, {Key: "a", Value: "2"}}
	if got := u.Pairs(); !slices.Equal(got, want) || u.Len() != 3 {
		t.Fatalf("Pairs = %v", got)
	}
	if v, ok := u.Get("a"); !ok || v != "1" {
		t.Fatalf("Get(a) = %q, %v; want the first", v, ok)
	}
	if v, ok := u.Get(""); !ok || v != "" {
		t.Fatalf("Get of the empty name = %q, %v", v, ok)
	}
	built := eventloop.UserProperties{}.Add("a", "1").Add("", "").Add("a", "2")
	if built != u {
		t.Fatalf("Add built %v, UserProps %v", built, u)
	}
	long := string(make([]byte, 70000)) // beyond MQTT's limit: kept, refused when sent
	if got := eventloop.UserProps("k", long).Pairs(); len(got) != 1 || got[0].Value != long {
		t.Fatal("a long value is not kept as it is")
	}
}

// An odd number of strings is a mistake the loop reports when the list is
// used: in a will, New fails.
func TestUserPropsOdd(t *testing.T) {
	odd := eventloop.UserProps("a", "1", "dangling")
	if odd.Len() != 1 {
		t.Fatalf("Len = %d, want the one complete pair", odd.Len())
	}
	_, err := eventloop.New(eventloop.Options{Servers: []string{"mqtt://x"}, Will: &eventloop.Will{
		Topic: "w", Properties: &eventloop.Properties{User: odd},
	}})
	if !errors.Is(err, eventloop.ErrInvalidOptions) {
		t.Fatalf("New with an odd will user property list: %v", err)
	}
}
