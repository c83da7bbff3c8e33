package topic

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The examples of MQTT 5.0 section 4.7 (Topic Names and Topic Filters)
// and 4.8.2 (Shared Subscriptions), and the edge cases around them.
var matchCases = []struct {
	filter, topic string
	want          bool
}{
	// 4.7.1.2 Multi-level wildcard.
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"#", "sport/tennis", true},
	{"#", "/", true},
	{"sport/tennis/#", "sport/tennis", true},
	{"sport/tennis/#", "sport/tenni", false},
	{"sport/tennis/#", "sport/tennisX/a", false},
	// 4.7.1.3 Single-level wildcard.
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+", "finance", true},
	{"+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	{"sport/+/player1", "sport/tennis/player1", true},
	{"sport/+/player1", "sport/tennis/player2", false},
	{"+/+/+", "a/b", false},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	// 4.7.2 Topics beginning with $.
	{"#", "$SYS/monitor/Clients", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"+", "$SYS", false},
	{"a/+", "a/$b", true}, // only the first level is special
	{"a/#", "a/$b/c", true},
	// 4.7.3 Topic semantics: exact, case sensitive, spaces are characters.
	{"ACCOUNTS", "Accounts", false},
	{"Accounts payable", "Accounts payable", true},
	{"/", "/", true},
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"a/b", "a/b/", false},
	{"a/b/", "a/b", false},
	// 4.8.2 Shared subscriptions: the group is not part of the topic.
	{"$share/consumer1/sport/tennis/+", "sport/tennis/player1", true},
	{"$share/consumer2/sport/tennis/+", "sport/tennis/player1", true},
	{"$share/consumer1/sport/tennis/+", "$share/consumer1/sport/tennis/player1", false},
	{"$share/g/#", "a/b", true},
	{"$share/g/#", "$SYS/x", false},
	{"$share/g//finance", "/finance", true},
	{"$share/g/$SYS/#", "$SYS/x", true},
	// Invalid filters and topics match nothing.
	{"sport/tennis#", "sport/tennis#", false},
	{"sport/tennis/#/ranking", "sport/tennis/x/ranking", false},
	{"sport+", "sport+", false},
	{"$share/g", "g", false},
	{"$share//a", "a", false},
	{"a/+", "a/+", false},
	{"a/#", "a/#", false},
	{"", "", false},
	{"a", "", false},
	{"a\x00", "a\x00", false},
}

func TestMatchSpecExamples(t *testing.T) {
	for _, c := range matchCases {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestTreeSpecExamples(t *testing.T) {
	for _, c := range matchCases {
		var tr Tree[int]
		err := tr.Set(c.filter, 1)
		if err != nil {
			if ValidateFilter(c.filter) == nil {
				t.Fatalf("Set(%q) = %v for a valid filter", c.filter, err)
			}
			if c.want {
				t.Fatalf("case %q %q: invalid filter wants a match", c.filter, c.topic)
			}
			continue
		}
		if got := len(tr.Match(c.topic)) == 1; got != c.want {
			t.Errorf("Tree{%q}.Match(%q) matched = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	for _, f := range []string{"+", "#", "+/tennis/#", "sport/+/player1", "/", "a//b", "$share/g/a/#", "$share/g/+", "$share/g//", "$SYS/#", "é/+"} {
		if err := ValidateFilter(f); err != nil {
			t.Errorf("ValidateFilter(%q) = %v, want nil", f, err)
		}
	}
	for _, f := range []string{"", "sport/tennis#", "sport/tennis/#/ranking", "sport+", "#/a", "a/#/", "++", "a/b+", "$share/g", "$share//a", "$share/g+/a", "$share/#/a", "$share/g/", "\xff", "a\x00", strings.Repeat("a", MaxLen+1)} {
		err := ValidateFilter(f)
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateFilter(%.20q) = %v, want ErrInvalidTopic", f, err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ValidateFilter(%d bytes): error of %d bytes, want it truncated", len(f), len(err.Error()))
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, n := range []string{"a", "/", " ", "$SYS/x", "$share/g/a", strings.Repeat("é", MaxLen/2)} {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%.20q) = %v, want nil", n, err)
		}
	}
	for _, n := range []string{"", "a/+", "#", "a#", "\xff", "a\x00", strings.Repeat("a", MaxLen+1)} {
		if err := ValidateName(n); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateName(%.20q) = %v, want ErrInvalidTopic", n, err)
		}
	}
}

func TestSplitShared(t *testing.T) {
	for _, c := range []struct {
		in, group, inner string
		shared           bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"a/b", "", "a/b", false},
		{"$share/g", "", "$share/g", false},
		{"$SYS/a", "", "$SYS/a", false},
	} {
		g, in, s := SplitShared(c.in)
		if g != c.group || in != c.inner || s != c.shared {
			t.Errorf("SplitShared(%q) = %q, %q, %v; want %q, %q, %v", c.in, g, in, s, c.group, c.inner, c.shared)
		}
	}
}

// TestTreeOverlapping: several filters matching one topic each yield
// their own value, once; shared subscriptions beside plain ones on the
// same filter are distinct.
func TestTreeOverlapping(t *testing.T) {
	var tr Tree[string]
	filters := []string{"sport/#", "sport/tennis/+", "sport/tennis/player1", "+/tennis/#", "#", "$share/g1/sport/tennis/+", "$share/g2/sport/tennis/+", "sport/+", "other/#", "$SYS/#"}
	for _, f := range filters {
		if err := tr.Set(f, "v:"+f); err != nil {
			t.Fatal(err)
		}
	}
	if tr.Len() != len(filters) {
		t.Fatalf("Len = %d, want %d", tr.Len(), len(filters))
	}
	got := matchedFilters(&tr, "sport/tennis/player1")
	want := []string{"#", "$share/g1/sport/tennis/+", "$share/g2/sport/tennis/+", "+/tennis/#", "sport/#", "sport/tennis/+", "sport/tennis/player1"}
	if !slices.Equal(got, want) {
		t.Fatalf("matches of sport/tennis/player1 = %q, want %q", got, want)
	}
	if got := matchedFilters(&tr, "$SYS/broker/uptime"); !slices.Equal(got, []string{"$SYS/#"}) {
		t.Fatalf("matches of $SYS/broker/uptime = %q, want only $SYS/#", got)
	}
	// Set on an existing filter replaces its value.
	if err := tr.Set("sport/#", "new"); err != nil {
		t.Fatal(err)
	}
	if v, ok := tr.Get("sport/#"); !ok || v != "new" || tr.Len() != len(filters) {
		t.Fatalf("after replacing: Get = %q, %v; Len = %d", v, ok, tr.Len())
	}
	// Delete removes exactly that filter.
	if !tr.Delete("$share/g1/sport/tennis/+") || tr.Delete("$share/g1/sport/tennis/+") {
		t.Fatal("Delete of a shared filter: want true once, then false")
	}
	if _, ok := tr.Get("$share/g2/sport/tennis/+"); !ok {
		t.Fatal("deleting group g1 removed group g2")
	}
	if _, ok := tr.Get("sport/tennis/+"); !ok {
		t.Fatal("deleting a shared filter removed the plain one")
	}
	for _, f := range filters {
		tr.Delete(f)
	}
	if tr.Len() != 0 || len(tr.root.children) != 0 {
		t.Fatalf("after deleting all: Len = %d, %d root children left", tr.Len(), len(tr.root.children))
	}
	if tr.Delete("a/#/b") || tr.Set("a/#/b", "x") == nil {
		t.Fatal("an invalid filter was accepted")
	}
}

func matchedFilters(tr *Tree[string], topic string) []string {
	var out []string
	for f, v := range tr.Matches(topic) {
		if v != "v:"+f && v != "new" {
			panic("value of " + f + " is " + v)
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// TestTreeAgreesWithMatch: for random filters and topics over a small
// alphabet (so that they collide), the tree finds exactly the filters
// for which Match is true.
func TestTreeAgreesWithMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 4))
	levels := []string{"a", "b", "", "$s", "+", "#"}
	gen := func(filter bool) string {
		n := 1 + r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			l := levels[r.IntN(len(levels))]
			if !filter && (l == "+" || l == "#") {
				l = "a"
			}
			if l == "#" && i != n-1 {
				l = "+"
			}
			parts[i] = l
		}
		s := strings.Join(parts, "/")
		if filter && r.IntN(5) == 0 {
			s = "$share/g" + string(rune('0'+r.IntN(2))) + "/" + s
		}
		return s
	}
	var tr Tree[string]
	var filters []string
	for range 300 {
		f := gen(true)
		if tr.Set(f, f) == nil && !slices.Contains(filters, f) {
			filters = append(filters, f)
		}
	}
	for range 3000 {
		topic := gen(false)
		var want []string
		for _, f := range filters {
			if Match(f, topic) {
				want = append(want, f)
			}
		}
		got := tr.Match(topic)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("Tree.Match(%q) = %q, want %q", topic, got, want)
		}
	}
}

func BenchmarkTreeMatch(b *testing.B) {
	var tr Tree[int]
	for i := range 1000 {
		_ = tr.Set("devices/"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+"/+/state", i)
	}
	_ = tr.Set("devices/#", -1)
	b.ReportAllocs()
	for b.Loop() {
		for range tr.Matches("devices/xxxq/42/state") {
		}
	}
}
