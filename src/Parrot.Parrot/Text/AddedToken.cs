namespace Parrot.Parrot.Text;

/// <summary>
/// A token from the <c>added_tokens</c> list of <c>tokenizer.json</c>: matched as a whole in the text
/// before any pre-tokenization, so it never gets split by the BPE model.
/// </summary>
/// <param name="Id">Token id.</param>
/// <param name="Content">Exact text of the token, e.g. <c>&lt;|im_start|&gt;</c>.</param>
/// <param name="Special">Special tokens (control tokens such as <c>&lt;|im_end|&gt;</c>) can be skipped when decoding and read as plain text when encoding.</param>
/// <param name="SingleWord">Match only when not preceded or followed by a word character.</param>
/// <param name="LStrip">The match swallows the whitespace before it.</param>
/// <param name="RStrip">The match swallows the whitespace after it.</param>
/// <param name="Normalized">Matched in the normalized text rather than the raw text.</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);
