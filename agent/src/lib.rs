//! skiff's node agent: the kubelet equivalent (images, runtime, pod network, probes, logs).

pub mod image;
