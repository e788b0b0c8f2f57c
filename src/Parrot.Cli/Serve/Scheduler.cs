using System.Diagnostics;
using System.Threading.Channels;
using Parrot.Parrot;
using Parrot.Parrot.Inference;

namespace Parrot.Cli.Serve;

/// <summary>What a request's generation sent to its HTTP handler.</summary>
/// <param name="Text">New answer text (may be empty).</param>
/// <param name="FinishReason">"stop" or "length" on the last event, else null.</param>
internal readonly record struct JobEvent(string Text, string? FinishReason);

/// <summary>How a job ended when it did not finish.</summary>
internal enum JobEnd { None, Cancelled, Deadline, Failed }

/// <summary>One request in the scheduler: its input, its output channel and how it may be stopped.</summary>
internal sealed class Job : IDisposable
{
    private readonly CancellationTokenSource _deadline;
    private readonly CancellationTokenSource _linked;

    public Job(ChatRequest request, TimeSpan deadline, CancellationToken clientGone)
    {
        Request = request;
        _deadline = new CancellationTokenSource(deadline);
        _linked = CancellationTokenSource.CreateLinkedTokenSource(clientGone, _deadline.Token);
        Stop = _linked.Token; // kept: the scheduler may look at it after the handler disposed the job
    }

    public ChatRequest Request { get; }
    public Stopwatch Clock { get; } = Stopwatch.StartNew();

    /// <summary>Cancelled when the client disconnects or the deadline passes.</summary>
    public CancellationToken Stop { get; }
    public bool DeadlinePassed => _deadline.IsCancellationRequested;

    /// <summary>Completes with the prompt's token count once the prompt is prefilled, or fails with an <see cref="ApiException"/>.</summary>
    public TaskCompletionSource<int> Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Channel<JobEvent> Events { get; } = Channel.CreateUnbounded<JobEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    public int CompletionTokens;
    public JobEnd End;
    internal LinkedListNode<Job>? Node;

    /// <summary>The handler is done with the job: if it is still queued or decoding, it is cancelled (the scheduler drops it).</summary>
    public void Dispose()
    {
        try { _linked.Cancel(); } catch (AggregateException) { }
        _linked.Dispose();
        _deadline.Dispose();
    }
}

/// <summary>
/// Continuous batching: one thread drives a <see cref="ContinuousBatch"/>. Waiting requests join at token
/// boundaries while the batch has room (at most --max-batch), finished ones leave, and a request whose
/// client disconnected or whose deadline passed is removed at the next boundary (its cache freed). At most
/// --max-queue requests wait; <see cref="TryEnqueue"/> refuses more.
/// </summary>
internal sealed class Scheduler : IDisposable
{
    private readonly ParrotModel _model;
    private readonly ContinuousBatch _batch;
    private readonly ServeMetrics _metrics;
    private readonly int _maxBatch, _maxQueue;
    private readonly LinkedList<Job> _queue = new();
    private readonly Dictionary<BatchSequence, Job> _active = new();
    private readonly object _lock = new();
    private readonly Thread _thread;
    private bool _stopping;

    public Scheduler(ParrotModel model, int maxBatch, int maxQueue, ServeMetrics metrics)
    {
        _model = model;
        _batch = model.StartContinuousBatch();
        _metrics = metrics;
        _maxBatch = maxBatch;
        _maxQueue = maxQueue;
        _thread = new Thread(Loop) { IsBackground = true, Name = "parrot-scheduler" };
        _thread.Start();
    }

    /// <summary>Most decoded together at any step so far (tests).</summary>
    public int LargestBatch { get; private set; }

    /// <summary>Queues <paramref name="job"/>; false when the queue is full.</summary>
    public bool TryEnqueue(Job job)
    {
        lock (_lock)
        {
            if (_stopping) return false;
            // A request may wait only while the batch is full; the queue bounds those waiting.
            int free = Math.Max(0, _maxBatch - _active.Count);
            if (_queue.Count >= _maxQueue + free) return false;
            job.Node = _queue.AddLast(job);
            _metrics.QueueLength = _queue.Count;
            Monitor.PulseAll(_lock);
        }
        job.Stop.Register(() => Forget(job));
        return true;
    }

    /// <summary>Takes a cancelled job out of the queue (a job already in the batch leaves at the next step).</summary>
    private void Forget(Job job)
    {
        lock (_lock)
        {
            if (job.Node?.List is not null)
            {
                _queue.Remove(job.Node);
                _metrics.QueueLength = _queue.Count;
                Finish(job, job.DeadlinePassed ? JobEnd.Deadline : JobEnd.Cancelled);
            }
            Monitor.PulseAll(_lock);
        }
    }

    private void Finish(Job job, JobEnd end)
    {
        job.End = end;
        if (end == JobEnd.Cancelled) _metrics.CancelledOne();
        if (end == JobEnd.Deadline) _metrics.DeadlineOne();
        job.Started.TrySetException(end == JobEnd.Deadline
            ? new ApiException(504, "the request did not finish before the server's deadline", "timeout_error", code: "deadline_exceeded")
            : new OperationCanceledException("the client went away"));
        job.Events.Writer.TryComplete();
    }

    private void Loop()
    {
        while (true)
        {
            var joining = new List<Job>();
            lock (_lock)
            {
                while (!_stopping && _queue.Count == 0 && _active.Count == 0) Monitor.Wait(_lock);
                if (_stopping) break;
                while (_active.Count + joining.Count < _maxBatch && _queue.First is { } first)
                {
                    _queue.RemoveFirst();
                    first.Value.Node = null;
                    joining.Add(first.Value);
                }
                _metrics.QueueLength = _queue.Count;
            }
            try { Iterate(joining); }
            catch (Exception e)
            {
                // Never let the scheduler thread die: fail what is in the batch and go on.
                Console.Error.WriteLine($"parrot serve: scheduler error: {e}");
                foreach (var (seq, job) in _active.ToList())
                {
                    _batch.Remove(seq);
                    job.End = JobEnd.Failed;
                    job.Events.Writer.TryComplete(new ApiException(500, $"generation failed: {e.Message}", "server_error"));
                }
                _active.Clear();
            }
        }
        foreach (var (seq, job) in _active) { _batch.Remove(seq); Finish(job, JobEnd.Cancelled); }
        _active.Clear();
    }

    private void Iterate(List<Job> joining)
    {
        {
            foreach (var job in joining) Join(job);
            foreach (var (seq, job) in _active.ToList())
                if (job.Stop.IsCancellationRequested)
                {
                    _batch.Remove(seq);
                    _active.Remove(seq);
                    Finish(job, job.DeadlinePassed ? JobEnd.Deadline : JobEnd.Cancelled);
                }
            _metrics.BatchSize = _active.Count;
            if (_active.Count == 0) return;
            LargestBatch = Math.Max(LargestBatch, _active.Count);
            IReadOnlyList<BatchEvent> events;
            try { events = _batch.Step(); }
            catch (Exception e)
            {
                Console.Error.WriteLine($"parrot serve: decoding failed: {e}");
                foreach (var (seq, job) in _active.ToList())
                {
                    _batch.Remove(seq);
                    job.End = JobEnd.Failed;
                    job.Events.Writer.TryComplete(new ApiException(500, $"generation failed: {e.Message}", "server_error"));
                }
                _active.Clear();
                return;
            }
            _metrics.Step(events.Count(e => e.Finished != FinishReason.Error)); // a failed sequence's event carries no token
            foreach (var e in events)
            {
                if (!_active.TryGetValue(e.Sequence, out var job)) continue;
                if (e.Finished == FinishReason.Error)
                {
                    // This sequence alone failed (its logits held no number, or its sampler could not pick); the others' events of this step follow.
                    Console.Error.WriteLine($"parrot serve: a request's generation failed: {e.Error}");
                    _active.Remove(e.Sequence);
                    job.End = JobEnd.Failed;
                    job.Events.Writer.TryComplete(new ApiException(500, $"generation failed: {e.Error}", "server_error"));
                    continue;
                }
                if (job.CompletionTokens++ == 0) _metrics.FirstToken(job.Clock.Elapsed);
                string? reason = e.Finished switch { null => null, FinishReason.MaxTokens => "length", _ => "stop" };
                job.Events.Writer.TryWrite(new JobEvent(e.Text, reason));
                if (reason is not null)
                {
                    job.Events.Writer.TryComplete();
                    _active.Remove(e.Sequence);
                }
            }
            _metrics.BatchSize = _active.Count;
        }
    }

    private void Join(Job job)
    {
        if (job.Stop.IsCancellationRequested)
        {
            Finish(job, job.DeadlinePassed ? JobEnd.Deadline : JobEnd.Cancelled);
            return;
        }
        try
        {
            var r = job.Request;
            var seq = _batch.Join(r.Turns, r.Image, r.Options, r.MaxTokens);
            _active.Add(seq, job);
            _metrics.PromptTokens(seq.PromptTokens);
            job.Started.TrySetResult(seq.PromptTokens);
        }
        catch (PromptTooLongException e)
        {
            Fail(job, ApiException.BadRequest(e.Message, "messages", "context_length_exceeded"));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // The model refused the prompt (an image marker without an image, an image for a text-only model…).
            Fail(job, ApiException.BadRequest(e.Message, "messages"));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"parrot serve: prefill failed: {e}");
            Fail(job, new ApiException(500, $"the prompt could not be processed: {e.Message}", "server_error"));
        }
    }

    private static void Fail(Job job, ApiException e)
    {
        job.End = JobEnd.Failed;
        job.Started.TrySetException(e);
        job.Events.Writer.TryComplete(e);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _stopping = true;
            foreach (var job in _queue) Finish(job, JobEnd.Cancelled);
            _queue.Clear();
            Monitor.PulseAll(_lock);
        }
        _thread.Join();
        _batch.Dispose();
    }
}
