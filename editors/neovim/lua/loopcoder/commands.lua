-- :LoopcoderReview, :LoopcoderExplain, :LoopcoderHint, :LoopcoderEdit and :LoopcoderScaffold:
-- each calls a server command (workspace/executeCommand, docs/protocol.md) without blocking.
local compat = require('loopcoder.compat')

local api = vim.api
local M = {}

local function notify(message, level)
  vim.notify('loopcoder: ' .. message, level or vim.log.levels.INFO)
end

local function attached_client(bufnr)
  local client = compat.client_for(bufnr)
  if not client then
    notify(('no loopcoder server is attached to this buffer (filetype %q): add it to setup{ filetypes = ... }')
      :format(vim.bo[bufnr].filetype), vim.log.levels.ERROR)
  end
  return client
end

--- The LSP range of lines line1..line2 (1-based, inclusive), in the client's position encoding.
function M.line_range(bufnr, line1, line2, encoding)
  local last = api.nvim_buf_get_lines(bufnr, line2 - 1, line2, true)[1]
  return {
    start = { line = line1 - 1, character = 0 },
    ['end'] = { line = line2 - 1, character = compat.character(last, #last, encoding) },
  }
end

--- Run server command `name` with `argument`; `done(result)` gets its answer, errors are shown.
function M.execute(client, bufnr, name, argument, done)
  compat.request(client, 'workspace/executeCommand', { command = name, arguments = { argument } }, function(err, result)
    if err then
      return notify(('%s failed: %s'):format(name, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
    if done then
      done(result)
    end
  end, bufnr)
end

--- {uri, range?} for the buffer: the lines of a :range, else the whole file.
local function target(client, bufnr, opts)
  local argument = { uri = vim.uri_from_bufnr(bufnr) }
  if opts.range and opts.range > 0 then
    argument.range = M.line_range(bufnr, opts.line1, opts.line2, client.offset_encoding)
  end
  return argument
end

--- A command run in the current buffer: `run(client, bufnr, opts)` with its loopcoder client,
--- else the error that none is attached.
local function in_buffer(run)
  return function(opts)
    local bufnr = api.nvim_get_current_buf()
    local client = attached_client(bufnr)
    if client then
      return run(client, bufnr, opts)
    end
  end
end

--- A command that says `doing` and runs server command `name` on the buffer or its :range.
local function on_target(name, doing, done)
  return in_buffer(function(client, bufnr, opts)
    notify(doing)
    M.execute(client, bufnr, name, target(client, bufnr, opts), done)
  end)
end

local review = on_target('loopcoder.review', 'reviewing…', function(result)
  local count = result and result.findings and #result.findings or 0
  local partial = result and result.complete == false and ' (the answer ran out of actionTokens)' or ''
  notify(('%d finding(s), shown as diagnostics%s'):format(count, partial))
end)

-- The server shows the explanation itself (window/showDocument, else window/showMessage).
local explain = on_target('loopcoder.explain', 'explaining…')

local hint = on_target('loopcoder.hint', 'thinking of a hint…') -- shown with window/showMessage

local edit = in_buffer(function(client, bufnr, opts)
  local function run(instruction)
    if not instruction or vim.trim(instruction) == '' then
      return notify('an edit needs an instruction, e.g. :LoopcoderEdit add logging', vim.log.levels.ERROR)
    end
    local argument = target(client, bufnr, opts)
    argument.instruction = instruction
    notify('editing…')
    M.execute(client, bufnr, 'loopcoder.edit', argument, function(result)
      if result and not result.applied then
        notify('the edit was not applied: ' .. tostring(result.failureReason or 'the buffer changed'),
          vim.log.levels.WARN)
      end
    end)
  end
  if opts.args ~= '' then
    return run(opts.args)
  end
  vim.ui.input({ prompt = 'loopcoder edit: ' }, run)
end)

--- {description, target} for loopcoder.scaffoldForm, or nil and why not.
function M.scaffold_argument(description, folder)
  if type(description) ~= 'string' or vim.trim(description) == '' then
    return nil, 'a form needs a description, e.g. "a form to record equipment repairs with date and handler"'
  end
  if type(folder) ~= 'string' or vim.trim(folder) == '' then
    return nil, 'a form needs a target folder'
  end
  local path = vim.fn.fnamemodify(vim.fn.expand(vim.trim(folder)), ':p'):gsub('/$', '')
  return { description = vim.trim(description), target = vim.uri_from_fname(path) }
end

--- {target, spec} that writes what a preview (loopcoder.scaffoldForm with preview = true) showed, or nil and why not.
function M.confirm_argument(preview, target_uri)
  local spec = type(preview) == 'table' and preview.spec or nil
  if type(spec) ~= 'table' or vim.tbl_isempty(spec) then
    return nil, "the server's preview has no form spec to confirm"
  end
  return { target = target_uri, spec = spec }
end

--- The preview as lines to read before confirming: the spec's summary (the server's words, the same in every
--- editor), the notes on what the sentence said that the spec does not hold, and where the files go.
function M.preview_lines(preview)
  local lines = {}
  for i, line in ipairs(preview.summary or {}) do
    table.insert(lines, i == 1 and line or ('  ' .. line))
  end
  for i, note in ipairs(preview.notes or {}) do
    if i == 1 then table.insert(lines, 'notes:') end
    table.insert(lines, '  ' .. note)
  end
  for i, repair in ipairs(preview.repairs or {}) do
    if i == 1 then table.insert(lines, 'names changed:') end
    table.insert(lines, '  ' .. repair)
  end
  local folder = type(preview.folder) == 'string' and vim.uri_to_fname(preview.folder) or '?'
  table.insert(lines, ('%d file(s) in %s'):format(#(preview.files or {}), folder))
  return lines
end

local scaffold = in_buffer(function(client, bufnr, opts)
  local function write(argument)
    M.execute(client, bufnr, 'loopcoder.scaffoldForm', argument, function(result)
      if result and result.applied then
        -- Neovim applies the edit to buffers; the app is run from disk, so save them. Each text ends with a
        -- newline, which left an empty last line in the buffer: 'eol' writes that newline back.
        for _, uri in ipairs(result.files or {}) do
          local file_buf = vim.uri_to_bufnr(uri)
          if api.nvim_buf_is_loaded(file_buf) and vim.bo[file_buf].modified then
            local count = api.nvim_buf_line_count(file_buf)
            if count > 1 and api.nvim_buf_get_lines(file_buf, count - 1, count, true)[1] == '' then
              api.nvim_buf_set_lines(file_buf, count - 1, count, true, {})
            end
            api.nvim_buf_call(file_buf, function() vim.cmd('silent noautocmd write') end)
          end
        end
        notify(('wrote %d file(s); run it with: %s'):format(#result.files, result.run))
      else
        notify('the files were not written: ' .. tostring(result and result.failureReason), vim.log.levels.WARN)
      end
    end)
  end
  -- First a preview, which writes nothing (and refuses a bad folder before anyone confirms); the spec it
  -- shows is the one written, sent back as it came, so the model is not asked again.
  local function run(description, folder)
    local argument, why = M.scaffold_argument(description, folder)
    if not argument then
      return notify(why, vim.log.levels.ERROR)
    end
    argument.preview = true
    notify('designing the form…')
    M.execute(client, bufnr, 'loopcoder.scaffoldForm', argument, function(preview)
      local confirmed, bad = M.confirm_argument(preview, argument.target)
      if not confirmed then
        return notify(bad, vim.log.levels.ERROR)
      end
      notify(table.concat(M.preview_lines(preview), '\n'))
      vim.ui.select({ 'Create', 'Cancel' }, { prompt = 'Create this form app?' }, function(choice)
        if choice == 'Create' then
          -- Neovim 0.7's workspace/applyEdit creates a file only in a folder that exists (0.8 and later make
          -- the folders): make them first, for the files the preview named.
          for _, uri in ipairs(preview.files or {}) do
            vim.fn.mkdir(vim.fn.fnamemodify(vim.uri_to_fname(uri), ':h'), 'p')
          end
          write(confirmed)
        else
          notify('cancelled: nothing was written')
        end
      end)
    end)
  end
  local function ask_folder(description)
    if not description then
      return -- cancelled
    end
    if vim.trim(description) == '' then
      return run(description, nil) -- says what is missing
    end
    vim.ui.input({ prompt = 'Folder for the form app: ', default = vim.fn.getcwd() .. '/form', completion = 'dir' },
      function(folder)
        if folder then
          run(description, folder)
        end
      end)
  end
  if opts.args ~= '' then
    return ask_folder(opts.args)
  end
  vim.ui.input({ prompt = 'Describe the form: ' }, ask_folder)
end)

function M.create()
  local create = api.nvim_create_user_command
  create('LoopcoderReview', review, { range = true, desc = 'loopcoder: review the file or the lines of a range' })
  create('LoopcoderExplain', explain, { range = true, desc = 'loopcoder: explain the file or a range' })
  create('LoopcoderHint', hint, { range = true, desc = 'loopcoder: a Socratic hint about the file or a range' })
  create('LoopcoderEdit', edit, { range = true, nargs = '*', desc = 'loopcoder: rewrite a range as the words say' })
  create('LoopcoderScaffold', scaffold, { nargs = '*', desc = 'loopcoder: a form app from a sentence' })
end

return M
