// Package mosquitto runs the real Eclipse Mosquitto broker for tests.
//
// Start finds the mosquitto binary, writes a configuration into the test's
// temporary directory, starts the broker on a free loopback port, waits until
// the port accepts connections and stops the broker when the test ends. The
// broker's log is kept in a file and shown when the test fails.
//
// When mosquitto is not installed the test is skipped, unless the CI
// environment variable is set: then the test fails, since CI is expected to
// install it (apt-get install -y mosquitto).
package mosquitto
