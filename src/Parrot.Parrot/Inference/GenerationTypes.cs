using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>One prompt to continue.</summary>
/// <param name="Ids">Token ids; <see cref="Text.ChatMl.ImageTokenIndex"/> (−200) marks where the image's visual tokens go.</param>
/// <param name="ImageFeatures">The image's vision features [1+N, C] (the selected CLIP layer) when <paramref name="Ids"/>
/// has an image marker; null for text-only prompts. Owned by the caller.</param>
public sealed record GenerationPrompt(int[] Ids, Tensor? ImageFeatures = null);

/// <summary>Why generation of one answer ended.</summary>
public enum FinishReason
{
    /// <summary>An end-of-sequence token (such as <c>&lt;|im_end|&gt;</c>) was generated.</summary>
    EndOfSequence,
    /// <summary>The answer reached one of the stop strings.</summary>
    StopString,
    /// <summary>The maximum number of new tokens was generated.</summary>
    MaxTokens,
    /// <summary>
    /// No token could be chosen: the sequence's row of logits held no number (every logit NaN or −∞), or its sampler
    /// could not pick from it (a +∞ logit under top-p). Only a
    /// <see cref="ContinuousBatch"/> sequence ends so (<see cref="BatchEvent.Error"/> says why), so that the others in its
    /// batch go on; the <see cref="Generator"/> throws instead.
    /// </summary>
    Error,
}

/// <summary>One generated answer.</summary>
/// <param name="Tokens">The generated ids, including the end-of-sequence id or the token that completed a stop string, when that ended it.</param>
/// <param name="Text">The answer's text: special tokens skipped, cut before a stop string ("" without a tokenizer).</param>
/// <param name="Reason">Why it ended.</param>
public sealed record GenerationResult(int[] Tokens, string Text, FinishReason Reason);

/// <summary>What one step of streaming generation produced for one prompt of the batch.</summary>
/// <param name="Row">Which prompt (its index in the batch).</param>
/// <param name="Token">The id generated at this step; null on the final event of a row that ended by the maximum length.</param>
/// <param name="Text">New answer text: whole characters only, never any part of a stop string (often empty).</param>
/// <param name="Finished">Set on the row's last event: why it ended.</param>
public sealed record GenerationEvent(int Row, int? Token, string Text, FinishReason? Finished);

/// <summary>
/// A causal language model as the <see cref="Generator"/> drives it: a batch of prompts is run once, then
/// one token per prompt at a time. <c>Generator.Wrap</c> of a Qwen2 or a
/// Parrot model gives one over the KV cache; tests may script their own.
/// </summary>
public interface IAutoregressiveModel
{
    /// <summary>Number of logits per position.</summary>
    int VocabSize { get; }

    /// <summary>Starts decoding <paramref name="prompts"/>, leaving room for <paramref name="maxNewTokens"/> more tokens each.</summary>
    IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens);
}

/// <summary>The state of one batch being decoded (the KV cache); dispose it when done.</summary>
public interface IDecodingSession : IDisposable
{
    /// <summary>Runs the prompts; returns, per prompt, the logits [vocab] of the token after it. Called once, first.</summary>
    float[][] Prefill();

    /// <summary>Appends one token per prompt; returns, per prompt, the logits [vocab] of the token after it.</summary>
    float[][] Step(int[] tokens);
}

/// <summary>
/// A session that can also decode greedily with the pick on the model's device, returning the ids alone: on a GPU
/// one small read per step instead of the whole row of logits (151,936 floats for Qwen2) and the host's scan of it.
/// The <see cref="Generator"/> takes this path whenever its pick is a plain argmax (temperature 0, no repetition
/// penalty) and still checks every id for end-of-sequence, stop strings and length itself. An id is exactly
/// TokenSampler's greedy pick from the logits the other path would return: the largest, the lowest id on a tie, NaN
/// below every number. A session takes one path, chosen by its prefill: <see cref="PrefillGreedy"/> then
/// <see cref="StepGreedy"/>, or <see cref="IDecodingSession.Prefill"/> then <see cref="IDecodingSession.Step"/>.
/// </summary>
public interface IGreedyDecodingSession : IDecodingSession
{
    /// <summary>Runs the prompts; returns, per prompt, the greedy id of the token after it. Called once, first.</summary>
    int[] PrefillGreedy();

    /// <summary>Appends one token per prompt; returns, per prompt, the greedy id of the token after it.</summary>
    int[] StepGreedy(int[] tokens);
}
