//! Drives the fedreq cores over real MQTT (rumqttc).

#![forbid(unsafe_code)]
