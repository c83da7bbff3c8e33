// Package topic holds the MQTT topic rules: validating topic names and
// filters, matching a topic against a filter (Match), and a Tree that
// routes a topic to the values of every filter matching it.
//
// The rules are those of MQTT 5 (section 4.7, the same in 3.1.1):
//
//   - Levels are separated by '/'; empty levels are levels ("a//b",
//     "/finance").
//   - '+' in a filter matches exactly one level, and must be the whole
//     level ("sport/+/player1"; "sport+" is invalid).
//   - '#' matches the parent level and any number of levels below it, and
//     must be the whole last level ("sport/#" matches "sport" and
//     "sport/tennis/player1").
//   - A filter starting with a wildcard does not match topics starting
//     with '$' ("#" does not match "$SYS/uptime"; "$SYS/#" does).
//   - A shared subscription "$share/<group>/<filter>" matches what its
//     filter matches; the group name is not part of the topic.
//   - Matching is exact and case sensitive: no normalisation of any kind.
//
// The package is pure: no I/O, no goroutines, no global state.
package topic
