"""Local problems the agents solve (softmax regression); their losses, closed-form gradients and optima."""
