using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;

namespace Parrot.Parrot;

/// <summary>
/// A multi-turn conversation with a <see cref="ParrotModel"/>: each message is answered in the context of
/// the whole history (ChatML), and the answer joins the history. Parrot looks at one image per
/// conversation: attaching a new image moves the image to the new message, and earlier turns keep their
/// text without it. Not for concurrent use: one message at a time (the model itself may be shared); a message sent
/// while another's answer is still streaming, or a <see cref="Reset"/> then, throws <see cref="InvalidOperationException"/>.
/// </summary>
public sealed class ParrotChat
{
    private readonly ParrotModel _model;
    private readonly string? _system;
    private readonly List<ChatTurn> _turns = new();
    private RgbImage? _image;
    private int _imageTurn = -1;
    /// <summary>1 while a message's answer is being generated (from its stream's first item until it ends or is disposed).</summary>
    private int _busy;

    internal ParrotChat(ParrotModel model, string? systemPrompt)
    {
        _model = model;
        _system = systemPrompt;
    }

    /// <summary>The conversation so far (system turn included when one was given), as it is formatted.</summary>
    public IReadOnlyList<ChatTurn> History => Build();

    /// <summary>The image of the conversation, if any.</summary>
    public RgbImage? Image => _image;

    /// <summary>Sends <paramref name="message"/> (with the image in <paramref name="imagePath"/>, when given) and returns the answer.</summary>
    public string Send(string message, string? imagePath = null, GenerationOptions? options = null) =>
        Send(message, ParrotModel.LoadImage(imagePath), options);

    /// <summary>Sends <paramref name="message"/> with <paramref name="image"/> (null: none new) and returns the answer.</summary>
    public string Send(string message, RgbImage? image, GenerationOptions? options = null)
    {
        var text = new System.Text.StringBuilder();
        foreach (var piece in SendStreaming(message, image, options)) text.Append(piece);
        return text.ToString();
    }

    /// <summary>Sends <paramref name="message"/> and streams the answer; the turn joins the history when the stream is finished.</summary>
    public IEnumerable<string> SendStreaming(string message, string? imagePath = null, GenerationOptions? options = null) =>
        SendStreaming(message, ParrotModel.LoadImage(imagePath), options);

    /// <summary>Sends <paramref name="message"/> with <paramref name="image"/> and streams the answer.</summary>
    public IEnumerable<string> SendStreaming(string message, RgbImage? image, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        _model.ThrowIfDisposed();
        if (image is not null && !_model.SupportsImages)
            throw new InvalidOperationException(_model.IsMultimodal ? $"{_model.Directory}: this Parrot model has no vision tower, so it cannot take images" : $"{_model.Directory}: a text-only Qwen2 model cannot look at images");
        return Run(message, image, options);
    }

    private IEnumerable<string> Run(string message, RgbImage? image, GenerationOptions? options)
    {
        // A second message while one is answered used to wait for the model's turn: on the same thread (a Send inside a
        // SendStreaming loop) for ever, as the stream holds that turn; on another, to be answered without the first
        // exchange and to race it into the history (turns were lost).
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0) throw Busy();
        try
        {
            foreach (var piece in Answer(message, image, options)) yield return piece;
        }
        finally { Volatile.Write(ref _busy, 0); }
    }

    private static InvalidOperationException Busy() =>
        new("ParrotChat: a message is still being answered; send the next one (or reset) when its answer is finished or its stream disposed — a chat is not for concurrent use");

    private IEnumerable<string> Answer(string message, RgbImage? image, GenerationOptions? options)
    {
        var pending = new ChatTurn(ChatRole.User, message, HasImage: image is not null);
        var conversation = Build(pending, image is not null);
        var imageNow = image ?? _image;
        GenerationResult? result = null;
        foreach (var e in _model.Stream(conversation, imageNow, options, r => result = r))
            if (e.Text.Length > 0) yield return e.Text;
        if (result is null) yield break;
        if (image is not null)
        {
            _image = image;
            _imageTurn = _turns.Count;
        }
        _turns.Add(pending with { HasImage = false });
        _turns.Add(new ChatTurn(ChatRole.Assistant, result.Text));
    }

    /// <summary>Forgets the history and the image (the system prompt stays).</summary>
    /// <exception cref="InvalidOperationException">A message is still being answered.</exception>
    public void Reset()
    {
        if (Volatile.Read(ref _busy) != 0) throw Busy();
        _turns.Clear();
        _image = null;
        _imageTurn = -1;
    }

    /// <summary>The formatted conversation: the image marker only on the turn that carries the current image.</summary>
    private List<ChatTurn> Build(ChatTurn? pending = null, bool pendingHasImage = false)
    {
        var list = new List<ChatTurn>();
        if (_system is not null) list.Add(new ChatTurn(ChatRole.System, _system));
        for (int i = 0; i < _turns.Count; i++)
            list.Add(i == _imageTurn && !pendingHasImage ? _turns[i] with { HasImage = true } : _turns[i]);
        if (pending is not null) list.Add(pending);
        return list;
    }
}
