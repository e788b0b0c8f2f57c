namespace Parrot.Parrot.Model;

/// <summary>
/// One tokenised sample: ids where <see cref="ImageToken"/> marks the image position, the training labels
/// (−100 where there is no loss; null at inference) and the index of its image in the batch's feature
/// tensor (−1 for text-only samples).
/// </summary>
public sealed record ParrotSample(int[] Ids, int[]? Labels, int ImageIndex = -1)
{
    /// <summary>The image placeholder id of the reference code.</summary>
    public const int ImageToken = -200;

    /// <summary>The label of positions without a loss.</summary>
    public const int IgnoreIndex = -100;
}
