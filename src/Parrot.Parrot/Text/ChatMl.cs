using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>Who speaks a turn of a conversation.</summary>
public enum ChatRole
{
    /// <summary>The system prompt (<c>system</c>).</summary>
    System,
    /// <summary>The human (<c>user</c>; "human" in Parrot's data).</summary>
    User,
    /// <summary>The model (<c>assistant</c>; "gpt" in Parrot's data).</summary>
    Assistant,
}

/// <summary>One turn of a conversation.</summary>
/// <param name="Role">Speaker.</param>
/// <param name="Text">What is said. A literal <c>&lt;image&gt;</c> in it becomes an image marker, as in the reference.</param>
/// <param name="HasImage">The turn carries the image: any <c>&lt;image&gt;</c> is taken out of the text, which is
/// trimmed, and <c>&lt;image&gt;\n</c> is put in front (Parrot's data preparation).</param>
public sealed record ChatTurn(ChatRole Role, string Text, bool HasImage = false);

/// <summary>A formatted conversation.</summary>
/// <param name="Prompt">The ChatML text, with <c>&lt;image&gt;</c> where each image goes.</param>
/// <param name="Ids">Token ids, <see cref="ChatMl.ImageTokenIndex"/> where an image's visual tokens go.</param>
/// <param name="Labels">Training targets, one per id: <see cref="ChatMl.IgnoreIndex"/> except on what the assistant says.</param>
public sealed record ChatEncoding(string Prompt, int[] Ids, int[] Labels);

/// <summary>
/// Qwen ChatML as Parrot formats it (its QwenConversationFormatter): a default system turn
/// "You are a helpful assistant." when the conversation does not start with one; each turn is
/// <c>&lt;|im_start|&gt;{role}\n{text}&lt;|im_end|&gt;</c> followed by <c>\n</c> unless it is the last;
/// each turn is tokenized on its own, split at <c>&lt;image&gt;</c> with <see cref="ImageTokenIndex"/>
/// between the pieces (the <c>\n</c> after the placeholder stays ordinary text). Labels copy the ids of
/// assistant turns after their header (<c>&lt;|im_start|&gt;assistant\n</c>, <see cref="AssistantHeaderLength"/>
/// tokens), so the answer, its <c>&lt;|im_end|&gt;</c> and the <c>\n</c> after it when it is not last; every
/// other position is <see cref="IgnoreIndex"/>.
/// </summary>
public sealed class ChatMl
{
    /// <summary>Marker id where an image's visual tokens are spliced in (Parrot's IMAGE_TOKEN_INDEX).</summary>
    public const int ImageTokenIndex = -200;
    /// <summary>Label of positions that do not count in the loss (IGNORE_INDEX).</summary>
    public const int IgnoreIndex = -100;
    /// <summary>The image placeholder in prompt text.</summary>
    public const string ImagePlaceholder = "<image>";
    /// <summary>System text used when a conversation has no system turn.</summary>
    public const string DefaultSystemText = "You are a helpful assistant.";

    private const string ImStart = "<|im_start|>", ImEnd = "<|im_end|>";

    private readonly BpeTokenizer _tokenizer;

    /// <summary>Uses <paramref name="tokenizer"/>, which must have the ChatML tokens <c>&lt;|im_start|&gt;</c> and <c>&lt;|im_end|&gt;</c>.</summary>
    public ChatMl(BpeTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        ImStartId = tokenizer.TokenToId(ImStart)
            ?? throw new ArgumentException($"ChatMl: the tokenizer has no {ImStart} token, so it cannot format ChatML", nameof(tokenizer));
        ImEndId = tokenizer.TokenToId(ImEnd)
            ?? throw new ArgumentException($"ChatMl: the tokenizer has no {ImEnd} token, so it cannot format ChatML", nameof(tokenizer));
        AssistantHeaderLength = tokenizer.Encode(Header(ChatRole.Assistant)).Length;
    }

    /// <summary>Id of <c>&lt;|im_start|&gt;</c>.</summary>
    public int ImStartId { get; }

    /// <summary>Id of <c>&lt;|im_end|&gt;</c>, the end-of-turn token generation stops at.</summary>
    public int ImEndId { get; }

    /// <summary>Tokens in <c>&lt;|im_start|&gt;assistant\n</c> (3 for Qwen): where labels of an assistant turn start.</summary>
    public int AssistantHeaderLength { get; }

    /// <summary>
    /// Formats a conversation the way the reference's <c>format</c> does. With
    /// <paramref name="generationPreface"/> null (training) every turn ends with <c>&lt;|im_end|&gt;</c>;
    /// otherwise an assistant turn holding the preface is appended without <c>&lt;|im_end|&gt;</c>, so the
    /// model continues it ("" gives a prompt ending <c>&lt;|im_start|&gt;assistant\n</c>).
    /// </summary>
    public ChatEncoding Format(IReadOnlyList<ChatTurn> conversation, string? generationPreface = null)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        var turns = new List<(ChatRole Role, string Text)>(conversation.Count + 2);
        foreach (var turn in conversation)
        {
            if (turn is null) throw new ArgumentException("ChatMl.Format: a turn is null", nameof(conversation));
            if (turn.Text is null) throw new ArgumentException($"ChatMl.Format: the text of a {turn.Role} turn is null", nameof(conversation));
            if (!Enum.IsDefined(turn.Role)) throw new ArgumentException($"ChatMl.Format: unknown role {(int)turn.Role}", nameof(conversation));
            turns.Add((turn.Role, turn.HasImage ? PlaceImageFirst(turn.Text) : turn.Text));
        }
        if (turns.Count == 0 || turns[0].Role != ChatRole.System) turns.Insert(0, (ChatRole.System, DefaultSystemText));
        if (generationPreface is not null) turns.Add((ChatRole.Assistant, generationPreface));

        var prompt = new StringBuilder();
        var ids = new List<int>();
        var labels = new List<int>();
        for (int i = 0; i < turns.Count; i++)
        {
            bool last = i == turns.Count - 1;
            string text = Header(turns[i].Role) + turns[i].Text;
            if (!last || generationPreface is null) text += ImEnd;
            if (!last) text += "\n";
            prompt.Append(text);
            int first = ids.Count;
            TokenizeWithImages(text, ids);
            for (int k = first; k < ids.Count; k++)
                labels.Add(turns[i].Role == ChatRole.Assistant && k - first >= AssistantHeaderLength ? ids[k] : IgnoreIndex);
        }
        return new ChatEncoding(prompt.ToString(), ids.ToArray(), labels.ToArray());
    }

    /// <summary>
    /// The ChatML text of a whole conversation, exactly the <see cref="ChatEncoding.Prompt"/> that
    /// <see cref="Format"/> gives for training (default system turn added, every turn closed), without a
    /// tokenizer: used to write ChatML-formatted text documents for language-model pre-training.
    /// </summary>
    public static string Render(IReadOnlyList<ChatTurn> conversation)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        var turns = new List<(ChatRole Role, string Text)>(conversation.Count + 1);
        foreach (var turn in conversation)
        {
            if (turn?.Text is null) throw new ArgumentException("ChatMl.Render: a turn or its text is null", nameof(conversation));
            turns.Add((turn.Role, turn.HasImage ? PlaceImageFirst(turn.Text) : turn.Text));
        }
        if (turns.Count == 0 || turns[0].Role != ChatRole.System) turns.Insert(0, (ChatRole.System, DefaultSystemText));
        var text = new StringBuilder();
        for (int i = 0; i < turns.Count; i++)
        {
            text.Append(Header(turns[i].Role)).Append(turns[i].Text).Append(ImEnd);
            if (i < turns.Count - 1) text.Append('\n');
        }
        return text.ToString();
    }

    /// <summary>Ids and labels of a whole training conversation (every turn closed by <c>&lt;|im_end|&gt;</c>).</summary>
    public ChatEncoding FormatForTraining(IReadOnlyList<ChatTurn> conversation) => Format(conversation);

    /// <summary>Prompt ids for generation: the conversation so far, then <c>&lt;|im_start|&gt;assistant\n</c> and the optional preface.</summary>
    public int[] BuildPrompt(IReadOnlyList<ChatTurn> conversation, string generationPreface = "") =>
        Format(conversation, generationPreface).Ids;

    /// <summary>Prompt ids for one question (the reference's <c>format_query</c>), with the image placeholder when <paramref name="withImage"/>.</summary>
    public int[] BuildQuery(string query, bool withImage) =>
        BuildPrompt([new ChatTurn(ChatRole.User, query, withImage)]);

    private static string Header(ChatRole role) => role switch
    {
        ChatRole.System => ImStart + "system\n",
        ChatRole.User => ImStart + "user\n",
        _ => ImStart + "assistant\n",
    };

    private static string PlaceImageFirst(string text) =>
        ImagePlaceholder + "\n" + PythonStrip(text.Replace(ImagePlaceholder, "", StringComparison.Ordinal));

    /// <summary>Python's str.strip(): Unicode whitespace plus the four information separators U+001C–U+001F.</summary>
    private static string PythonStrip(string s)
    {
        static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';
        int start = 0, end = s.Length;
        while (start < end && IsSpace(s[start])) start++;
        while (end > start && IsSpace(s[end - 1])) end--;
        return s[start..end];
    }

    private void TokenizeWithImages(string text, List<int> ids)
    {
        int start = 0;
        while (true)
        {
            int at = text.IndexOf(ImagePlaceholder, start, StringComparison.Ordinal);
            _tokenizer.Encode(text[start..(at < 0 ? text.Length : at)], ids);
            if (at < 0) return;
            ids.Add(ImageTokenIndex);
            start = at + ImagePlaceholder.Length;
        }
    }
}
