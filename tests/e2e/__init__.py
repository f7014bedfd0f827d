"""End-to-end scenarios on the real images, wired as the ECS task definitions wire them."""
