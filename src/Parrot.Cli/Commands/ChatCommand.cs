using System.CommandLine;
using Parrot.Parrot;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Vision;

namespace Parrot.Cli;

/// <summary>
/// `parrot chat --model DIR [--image FILE] [--prompt TEXT] [sampling flags]`: a terminal chat with a Parrot (or
/// Qwen2) model directory, the answer streamed as it is generated. With --prompt it answers once and exits;
/// otherwise it reads messages line by line from standard input (multi-turn ChatML history) with the
/// commands /image PATH (attach an image to the next message), /reset (forget the conversation) and /exit.
/// Answers go to standard output, one per message followed by a blank line; prompts and notices go to
/// standard error, so a script can read the answers alone.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Parrot or Qwen2 model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var image = new Option<string?>("--image") { Description = "Image file (JPEG, PNG, WebP, GIF, BMP) for the first message" };
        var prompt = new Option<string?>("--prompt") { Description = "Answer this one message and exit (no interactive session)" };
        var system = new Option<string?>("--system") { Description = "System prompt (default: Parrot's \"You are a helpful assistant.\")" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Most tokens per answer; the conversation so far and these must fit the model's context (max_position_embeddings), else the message is refused, as serve refuses max_tokens past it", DefaultValueFactory = _ => 512 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature; 0 = greedy", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling: keep the most likely tokens up to this probability mass (0 < p ≤ 1)", DefaultValueFactory = _ => 1 };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens; 0 = all", DefaultValueFactory = _ => 0 };
        var penalty = new Option<double>("--repetition-penalty") { Description = "Penalty on tokens already seen (1 = off)", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "Sampling seed (same seed, same answer)", DefaultValueFactory = _ => 0 };
        var cmd = new Command("chat", "Chat with a Parrot or Qwen2 model in the terminal (streamed answers), or answer one --prompt and exit");
        var device = DeviceOption.Create();
        var dtype = DTypeOption.Create();
        foreach (var o in new Option[] { device, dtype, model, image, prompt, system, maxNew, temperature, topP, topK, penalty, seed }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("chat", () =>
        {
            var dev = DeviceOption.Resolve(p.GetValue(device), "chat");
            var options = new GenerationOptions
            {
                MaxNewTokens = p.GetValue(maxNew),
                Temperature = p.GetValue(temperature),
                TopP = p.GetValue(topP),
                TopK = p.GetValue(topK),
                RepetitionPenalty = p.GetValue(penalty),
                Seed = p.GetValue(seed),
            };
            try { options.Validate(); }
            catch (ArgumentException e) { throw new CliException(e.Message.Replace("generation: ", "")); }
            // Checked before the model is loaded; the interactive chat skips an empty line, and a one-shot empty message
            // was sent to the model and answered.
            if (p.GetValue(prompt) is { } given && string.IsNullOrWhiteSpace(given))
                throw new CliException("--prompt is empty: give the message to answer, or leave --prompt out for an interactive chat");
            string dir = p.GetValue(model)!;
            if (!Directory.Exists(dir)) throw new CliException($"--model: {dir} is not a directory");
            RgbImage? first = p.GetValue(image) is { } path ? LoadImage(path, "--image") : null;

            using var m = ParrotModel.Load(dir, new ParrotModelOptions { Device = dev, DType = DTypeOption.Resolve(p.GetValue(dtype)) });
            if (first is not null && !m.SupportsImages)
                throw new CliException(m.IsMultimodal ? $"--image: {dir} has no vision tower (config.json's mm_vision_tower names no directory here)" : $"--image: {dir} is a text-only Qwen2 model");
            var chat = m.StartChat(p.GetValue(system));
            var stdout = Console.Out;

            if (p.GetValue(prompt) is { } once)
            {
                foreach (var piece in chat.SendStreaming(once, first, options)) { stdout.Write(piece); stdout.Flush(); }
                stdout.WriteLine();
                return 0;
            }
            return Interactive(m, chat, first, options, Console.In, stdout, Console.Error);
        }));
        return cmd;
    }

    private static int Interactive(ParrotModel model, ParrotChat chat, RgbImage? pending, GenerationOptions options, TextReader input, TextWriter output, TextWriter notes)
    {
        notes.WriteLine($"Chatting with {model.Directory}. Commands: /image PATH, /reset, /exit.");
        if (pending is not null) notes.WriteLine("(image attached to your first message)");
        while (true)
        {
            notes.Write("> ");
            notes.Flush();
            string? line = input.ReadLine();
            if (line is null) return 0;
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line.StartsWith('/'))
            {
                var (command, argument) = SplitCommand(line);
                switch (command)
                {
                    case "/exit" or "/quit":
                        return 0;
                    case "/reset":
                        chat.Reset();
                        pending = null;
                        notes.WriteLine("(conversation reset)");
                        continue;
                    case "/image":
                        if (argument.Length == 0) { notes.WriteLine("usage: /image PATH"); continue; }
                        if (!model.SupportsImages) { notes.WriteLine(model.IsMultimodal ? "this model has no vision tower, so it cannot take images" : "this is a text-only model; it cannot take images"); continue; }
                        try
                        {
                            pending = LoadImage(argument, "/image");
                            notes.WriteLine($"(image {argument} attached to your next message)");
                        }
                        catch (CliException e) { notes.WriteLine(e.Message); }
                        continue;
                    default:
                        notes.WriteLine($"unknown command {command}: use /image PATH, /reset or /exit");
                        continue;
                }
            }
            try
            {
                foreach (var piece in chat.SendStreaming(line, pending, options)) { output.Write(piece); output.Flush(); }
                pending = null;
                output.WriteLine();
                output.WriteLine();
                output.Flush();
            }
            catch (PromptTooLongException e)
            {
                // The history grows with every turn: say how to make room (the turn was not added).
                notes.WriteLine($"error: {e.Message} (/reset starts a new conversation; a smaller --max-new-tokens leaves more room for the prompt)");
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or InvalidDataException)
            {
                notes.WriteLine($"error: {e.Message}");
            }
        }
    }

    private static (string Command, string Argument) SplitCommand(string line)
    {
        int space = line.IndexOf(' ');
        if (space < 0) return (line.ToLowerInvariant(), "");
        string arg = line[(space + 1)..].Trim();
        if (arg.Length >= 2 && arg[0] == '"' && arg[^1] == '"') arg = arg[1..^1];
        return (line[..space].ToLowerInvariant(), arg);
    }

    private static RgbImage LoadImage(string path, string what)
    {
        try { return ImageLoader.Load(path); }
        catch (ImageLoadException e) { throw new CliException($"{what}: {e.Message}"); } // the loader's message begins with the path
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"{what}: {path}: {e.Message}");
        }
    }
}
