pub mod host_image;
pub mod podman;
