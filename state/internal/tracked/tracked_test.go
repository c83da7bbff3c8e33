package tracked

import (
	"maps"
	"slices"
	"testing"
)

func changes[K comparable](m *Map[K, int]) map[K]bool { return maps.Collect(m.Changes()) }

func TestMapRecordsEveryChange(t *testing.T) {
	var m Map[string, int]
	m.Set("before", 1) // tracking off: nothing recorded
	if m.Changed() {
		t.Fatalf("a change recorded with tracking off")
	}
	m.Set("kept", 2)
	m.Track(true)
	if m.Changed() {
		t.Fatalf("Track(true) left changes recorded")
	}

	m.Set("new", 3)        // created: had false
	m.Set("before", 10)    // replaced: had true
	m.Delete("kept")       // deleted: had true
	m.Set("transient", 4)  // created and deleted: had false, absent
	m.Delete("transient")  //
	if m.Delete("never") { // nothing to delete: not recorded
		t.Fatalf("Delete of a missing key reported true")
	}
	m.Set("new", 5) // a second change keeps the first had
	want := map[string]bool{"new": false, "before": true, "kept": true, "transient": false}
	if got := changes(&m); !maps.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	m.ResetChanges()
	if m.Changed() {
		t.Fatalf("ResetChanges left changes")
	}

	if _, ok := m.Modify("missing"); ok || m.Changed() {
		t.Fatalf("Modify of a missing key recorded a change")
	}
	if v, ok := m.Modify("new"); !ok || v != 5 {
		t.Fatalf("Modify(new) = %d, %v", v, ok)
	}
	if v, ok := m.Get("before"); !ok || v != 10 {
		t.Fatalf("Get(before) = %d, %v", v, ok)
	}
	if got := changes(&m); !maps.Equal(got, map[string]bool{"new": true}) {
		t.Fatalf("after Modify and Get: changes %v, want only new", got)
	}
	m.ResetChanges()

	m.Clear()
	if got := changes(&m); !maps.Equal(got, map[string]bool{"new": true, "before": true}) || m.Len() != 0 {
		t.Fatalf("Clear: changes %v, %d left", got, m.Len())
	}

	m.Track(false)
	m.Set("off", 1)
	if m.Changed() {
		t.Fatalf("a change recorded after Track(false)")
	}
}

type qrec struct {
	present, had bool
	v            int
}

func qchanges(q *Queue[*int]) map[int64]qrec {
	out := map[int64]qrec{}
	for k, c := range q.Changes() {
		out[k] = qrec{c.Present, c.Had, *c.Value}
	}
	return out
}

func values(q *Queue[*int]) ([]int64, []int) {
	var ks []int64
	var vs []int
	for k, v := range q.All() {
		ks = append(ks, k)
		vs = append(vs, *v)
	}
	return ks, vs
}

func TestQueueKeysAndChanges(t *testing.T) {
	var q Queue[*int]
	n := func(v int) *int { return &v }
	q.PushBack(n(0))
	q.PushBack(n(1))
	q.Track(true)
	q.PushBack(n(2))
	q.PushBack(n(3))
	if v, ok := q.PopFront(); !ok || *v != 0 {
		t.Fatalf("PopFront = %v, %v", v, ok)
	}
	q.PushFront([]*int{n(-2), n(-1)})
	dropped := q.DeleteFunc(func(v *int) bool { return *v == 2 || *v == -1 })
	if len(dropped) != 2 || *dropped[0] != -1 || *dropped[1] != 2 {
		t.Fatalf("DeleteFunc returned %v", dropped)
	}
	q.ModifyEach(func(v *int) bool {
		if *v == 1 {
			*v = 100
			return true
		}
		return false
	})
	ks, vs := values(&q)
	if !slices.Equal(ks, []int64{-2, 1, 3}) || !slices.Equal(vs, []int{-2, 100, 3}) {
		t.Fatalf("queue keys %v values %v", ks, vs)
	}
	want := map[int64]qrec{
		0:  {false, true, 0},   // popped, was there
		1:  {true, true, 100},  // modified
		2:  {false, false, 2},  // added and dropped
		3:  {true, false, 3},   // added
		-2: {true, false, -2},  // put back at the front
		-1: {false, false, -1}, // put back and dropped
	}
	if got := qchanges(&q); !maps.Equal(got, want) {
		t.Fatalf("changes\n%v, want\n%v", got, want)
	}
	if f, _ := q.Front(); *f != -2 || q.Len() != 3 {
		t.Fatalf("Front %d, Len %d", *f, q.Len())
	}
}

// A queue that never drains keeps its storage bounded.
func TestQueueReclaims(t *testing.T) {
	var q Queue[int]
	for i := range 100000 {
		q.PushBack(i)
		if i >= 8 {
			q.PopFront()
		}
	}
	if q.Len() != 8 || q.Cap() > 64 {
		t.Fatalf("Len %d, Cap %d for a backlog of 8", q.Len(), q.Cap())
	}
	if f, _ := q.Front(); f != 99992 {
		t.Fatalf("Front %d", f)
	}
}

func TestQueueRestore(t *testing.T) {
	var q Queue[int]
	q.Restore([]Entry[int]{{Key: -5, Value: 1}, {Key: 7, Value: 2}})
	q.Track(true)
	q.PushBack(3)
	q.PushFront([]int{0})
	ks := slices.Collect(func(yield func(int64) bool) {
		for k := range q.All() {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(ks, []int64{-6, -5, 7, 8}) {
		t.Fatalf("keys after Restore %v", ks)
	}
}

func TestQueueEntriesElsewhere(t *testing.T) {
	var q Queue[*int]
	n := func(v int) *int { return &v }
	q.PushBack(n(0))
	q.Track(true)
	// Keys 1 and 2 are taken by entries kept elsewhere: not recorded.
	if k := q.Reserve(); k != 1 {
		t.Fatalf("Reserve = %d, want 1", k)
	}
	q.Reserve()
	if q.Changed() || q.Len() != 1 || q.Next() != 3 {
		t.Fatalf("after Reserve: changed %v, len %d, next %d", q.Changed(), q.Len(), q.Next())
	}
	q.PopFront()
	q.ResetChanges()
	q.AppendStored([]Entry[*int]{{Key: 1, Value: n(1)}, {Key: 2, Value: n(2)}})
	if q.Changed() {
		t.Fatalf("AppendStored recorded a change")
	}
	q.PushFront([]*int{n(-1)})
	ks, vs := values(&q)
	if !slices.Equal(ks, []int64{-1, 1, 2}) || !slices.Equal(vs, []int{-1, 1, 2}) {
		t.Fatalf("keys %v values %v", ks, vs)
	}

	var r Queue[*int]
	r.Restore([]Entry[*int]{{Key: 5, Value: n(5)}})
	r.SetBounds(3, 10) // 3..9 elsewhere (3 and 4 cannot be: bounds only widen)
	r.PushBack(n(10))
	r.PushFront([]*int{n(2)})
	if ks, _ := values(&r); !slices.Equal(ks, []int64{2, 5, 10}) {
		t.Fatalf("keys %v, want [2 5 10]", ks)
	}
}
