namespace Parrot.Tensors;

/// <summary>How a loss over many rows is reduced to its result.</summary>
public enum LossReduction
{
    /// <summary>Sum over the counted rows divided by their number (NaN when no row counts, as PyTorch).</summary>
    Mean,
    /// <summary>Sum over the rows (0 when no row counts).</summary>
    Sum,
    /// <summary>One loss per row, unreduced.</summary>
    None,
}
