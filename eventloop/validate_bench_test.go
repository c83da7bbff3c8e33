package eventloop

import "testing"

// BenchmarkValidatePublish is the cost validation adds to a publish with
// a typical topic and a few properties.
func BenchmarkValidatePublish(b *testing.B) {
	p := Publish{Topic: "factory/line-7/sensor/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`),
		Properties: &Properties{ContentType: "application/json", ResponseTopic: "replies/sensor-7",
			User: UserProps("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736", "origin", "sensor-7")}}
	r := requestRules(5)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.publish(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidatePublishTopicOnly: a publish without properties.
func BenchmarkValidatePublishTopicOnly(b *testing.B) {
	p := Publish{Topic: "factory/line-7/sensor/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`)}
	r := requestRules(5)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.publish(p); err != nil {
			b.Fatal(err)
		}
	}
}
