package topic

import "iter"

// Tree routes topics to values stored under topic filters: each filter
// (wildcards and shared subscriptions included) holds one value, and
// Match finds the values of every filter a topic matches, following the
// same rules as the package-level Match. Lookups cost in proportion to
// the topic's levels and the wildcards along the way, not to the number
// of filters.
//
// The zero Tree is empty and ready to use. A Tree is not safe for
// concurrent use: guard it with a mutex, or keep it on one goroutine.
type Tree[V any] struct {
	root node[V]
	n    int
}

type node[V any] struct {
	children map[string]*node[V]
	entries  []entry[V] // the filters ending at this node (a filter and its $share/<group>/ forms)
}

type entry[V any] struct {
	filter string
	value  V
}

// Set stores v under filter, replacing the value an identical filter
// held. It fails, storing nothing, when filter is invalid (ErrInvalidTopic).
// "a/+" and "$share/g/a/+" are different filters.
func (t *Tree[V]) Set(filter string, v V) error {
	if err := ValidateFilter(filter); err != nil {
		return err
	}
	n := &t.root
	_, inner, _ := SplitShared(filter)
	for i := 0; ; {
		level, more := nextLevel(inner, &i)
		child := n.children[level]
		if child == nil {
			if n.children == nil {
				n.children = map[string]*node[V]{}
			}
			child = &node[V]{}
			n.children[level] = child
		}
		n = child
		if !more {
			break
		}
	}
	for i := range n.entries {
		if n.entries[i].filter == filter {
			n.entries[i].value = v
			return nil
		}
	}
	n.entries = append(n.entries, entry[V]{filter, v})
	t.n++
	return nil
}

// Get returns the value stored under filter (exactly this filter, not the
// filters matching it).
func (t *Tree[V]) Get(filter string) (V, bool) {
	if n := t.find(filter, nil); n != nil {
		for _, e := range n.entries {
			if e.filter == filter {
				return e.value, true
			}
		}
	}
	var zero V
	return zero, false
}

// Delete removes filter and its value, reporting whether it was there.
func (t *Tree[V]) Delete(filter string) bool {
	var path []*node[V]
	n := t.find(filter, &path)
	if n == nil {
		return false
	}
	found := false
	for i, e := range n.entries {
		if e.filter == filter {
			n.entries = append(n.entries[:i], n.entries[i+1:]...)
			found = true
			break
		}
	}
	if !found {
		return false
	}
	t.n--
	// Prune nodes left without filters or children, from the leaf up.
	_, inner, _ := SplitShared(filter)
	levels := make([]string, 0, len(path))
	for i := 0; ; {
		level, more := nextLevel(inner, &i)
		levels = append(levels, level)
		if !more {
			break
		}
	}
	for k := len(path) - 1; k >= 1; k-- {
		child := path[k]
		if len(child.entries) > 0 || len(child.children) > 0 {
			break
		}
		delete(path[k-1].children, levels[k-1])
	}
	return true
}

// find returns the node of filter, or nil; path, if given, receives the
// nodes from the root down to it.
func (t *Tree[V]) find(filter string, path *[]*node[V]) *node[V] {
	if ValidateFilter(filter) != nil {
		return nil
	}
	n := &t.root
	if path != nil {
		*path = append(*path, n)
	}
	_, inner, _ := SplitShared(filter)
	for i := 0; ; {
		level, more := nextLevel(inner, &i)
		if n = n.children[level]; n == nil {
			return nil
		}
		if path != nil {
			*path = append(*path, n)
		}
		if !more {
			return n
		}
	}
}

// Len returns the number of filters stored.
func (t *Tree[V]) Len() int { return t.n }

// Match returns the values of every filter that topic matches (in no
// particular order; each filter once). An invalid topic name matches
// nothing.
func (t *Tree[V]) Match(topic string) []V {
	var out []V
	for _, v := range t.Matches(topic) {
		out = append(out, v)
	}
	return out
}

// Matches iterates over the filters that topic matches and their values.
// The tree must not change during the iteration.
func (t *Tree[V]) Matches(topic string) iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		if ValidateName(topic) != nil {
			return
		}
		dollar := topic[0] == '$'
		t.root.match(topic, 0, !dollar, yield)
	}
}

// match visits the filters below n matching topic[i:]; wild reports
// whether wildcards may match this level (not the first level of a
// $-topic).
func (n *node[V]) match(topic string, i int, wild bool, yield func(string, V) bool) bool {
	if wild {
		if c := n.children["#"]; c != nil && !c.yieldAll(yield) {
			return false
		}
	}
	level, more := nextLevel(topic, &i)
	if c := n.children[level]; c != nil {
		if !c.matchRest(topic, i, more, yield) {
			return false
		}
	}
	if wild {
		if c := n.children["+"]; c != nil {
			if !c.matchRest(topic, i, more, yield) {
				return false
			}
		}
	}
	return true
}

// matchRest continues below n, whose level matched: at the topic's end,
// n's own filters and a "#" child (the parent level) match.
func (n *node[V]) matchRest(topic string, i int, more bool, yield func(string, V) bool) bool {
	if more {
		return n.match(topic, i, true, yield)
	}
	if !n.yieldAll(yield) {
		return false
	}
	if c := n.children["#"]; c != nil {
		return c.yieldAll(yield)
	}
	return true
}

func (n *node[V]) yieldAll(yield func(string, V) bool) bool {
	for _, e := range n.entries {
		if !yield(e.filter, e.value) {
			return false
		}
	}
	return true
}
