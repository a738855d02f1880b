"""The explained scalar: the projection onto the unperturbed embedding has a gradient at the image
itself, where the cosine similarity's is zero (the reason it is the default)."""

import torch

from encoderlens.attention.targets import ClassScore, SelfSimilarity


def _encoder():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))


def test_projection_has_a_gradient_where_the_cosine_has_none():
    encoder = _encoder()
    x = torch.randn(3, 12, requires_grad=True)
    reference = encoder(x).detach()
    cosine = torch.nn.functional.cosine_similarity(encoder(x), reference).sum()
    (cosine_grad,) = torch.autograd.grad(cosine, x)
    target = SelfSimilarity(reference)
    (grad,) = torch.autograd.grad(target(encoder(x)).sum(), x)
    assert cosine_grad.abs().max() < 1e-6
    assert grad.abs().max() > 1e-3
    # J^T e0/|e0|, computed by hand through the Jacobian of each image
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(lambda v: encoder(v[None])[0], x[i].detach())
        expected = jacobian.T @ (reference[i] / reference[i].norm())
        torch.testing.assert_close(grad[i], expected, rtol=1e-5, atol=1e-6)


def test_values_relative_scale_and_repeated_batches():
    reference = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    target = SelfSimilarity(reference)
    torch.testing.assert_close(target(reference), torch.tensor([5.0, 2.0]))
    relative = SelfSimilarity(reference, relative=True)
    torch.testing.assert_close(relative(reference), torch.ones(2))
    # two perturbations of each image, stacked image-major per perturbation: rows i, i+B
    perturbed = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, -2.0]])
    torch.testing.assert_close(relative(perturbed), torch.tensor([9 / 25, 0.0, 0.0, -1.0]))


def test_class_score_explains_the_predicted_class():
    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    reference = torch.tensor([[2.0, 1.0], [-1.0, -3.0]])
    target = ClassScore(head, reference)
    assert target.classes.tolist() == [0, 2]
    torch.testing.assert_close(target(reference), torch.tensor([2.0, 4.0]))
    # the class stays fixed when the perturbed image would predict another
    torch.testing.assert_close(target(torch.tensor([[0.0, 5.0], [0.0, 0.0]])), torch.tensor([0.0, 0.0]))
