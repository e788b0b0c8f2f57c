namespace Parrot.Nn.Optim;

/// <summary>Learning rate as a function of the step (0-based: the rate used for step k+1 of training).</summary>
public abstract class LrSchedule
{
    /// <summary>The rate for the step with 0-based index <paramref name="step"/>.</summary>
    public abstract double At(long step);

    /// <summary>Sets the optimizer's rate for step <paramref name="step"/>.</summary>
    public void Apply(Optimizer optimizer, long step) => optimizer.LearningRate = At(step);
}

/// <summary>A constant rate, after an optional linear warm-up from 0 (PyTorch/HF "constant_with_warmup").</summary>
public sealed class ConstantSchedule(double peak, long warmupSteps = 0) : LrSchedule
{
    /// <inheritdoc/>
    public override double At(long step) => warmupSteps > 0 && step < warmupSteps ? peak * step / warmupSteps : peak;
}

/// <summary>
/// Linear warm-up then cosine decay to 0, as Hugging Face's get_cosine_schedule_with_warmup (the Parrot
/// recipe: warm-up = ceil(ratio · total steps)).
/// </summary>
public sealed class WarmupCosineSchedule : LrSchedule
{
    private readonly double _peak;
    private readonly long _warmup, _total;

    /// <summary>Warm-up over <paramref name="warmupSteps"/> steps, cosine over the rest of <paramref name="totalSteps"/>.</summary>
    public WarmupCosineSchedule(double peak, long totalSteps, long warmupSteps)
    {
        if (totalSteps <= 0) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "total steps must be positive");
        if (warmupSteps < 0 || warmupSteps > totalSteps) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "warm-up must be within the total");
        _peak = peak; _total = totalSteps; _warmup = warmupSteps;
    }

    /// <summary>Warm-up given as a ratio of the total steps (rounded up, as HF's get_warmup_steps does).</summary>
    public static WarmupCosineSchedule WithWarmupRatio(double peak, long totalSteps, double warmupRatio) =>
        new(peak, totalSteps, (long)Math.Ceiling(totalSteps * warmupRatio));

    /// <inheritdoc/>
    public override double At(long step)
    {
        if (step < _warmup) return _peak * step / Math.Max(1, _warmup);
        double progress = (double)(step - _warmup) / Math.Max(1, _total - _warmup);
        return _peak * Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * 0.5 * 2 * progress)));
    }
}
