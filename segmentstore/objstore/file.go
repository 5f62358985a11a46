package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// FileStore keeps objects as files under a directory: key "a/b/c" is file dir/a/b/c.
// Writes go to a temporary file in the same directory, are fsynced, then renamed over the
// target, so that a crash leaves either the old object or the new one.
type FileStore struct {
	dir  string
	dirs sync.Mutex // held while a Put creates and syncs directories (mkdirs)
}

// OpenFile returns a store rooted at dir, creating the directory if needed.
func OpenFile(dir string) (*FileStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file store %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("file store %q: %w", dir, err)
	}
	return &FileStore{dir: abs}, nil
}

func (s *FileStore) String() string { return "file://" + s.dir }

func (s *FileStore) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, parts ...[]byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := s.mkdirs(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, mapFileErr(err))
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, mapFileErr(err))
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	for _, data := range parts {
		if _, err := tmp.Write(data); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("put %s: %w", key, mapFileErr(err))
	}
	committed = true
	// The rename is durable only once the directory entry is: an object acked before
	// would be missing after a power loss while its index entry stays.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// mkdirs creates dir and its missing parents, and syncs the directories it added entries
// to: a directory created is durable only once its parent's entry is.
func (s *FileStore) mkdirs(dir string) error {
	// One at a time: a Put that finds a directory another has just created must not ack
	// before that one's parent is synced.
	s.dirs.Lock()
	defer s.dirs.Unlock()
	var created []string
	for d := dir; d != s.dir && d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, d)
	}
	if len(created) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			// Removed, so that the next Put creates and syncs them again rather than
			// find them and ack an object whose directory may not survive.
			for _, c := range created {
				_ = os.Remove(c)
			}
			return err
		}
	}
	return nil
}

// syncDir makes dir's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapFileErr(err))
	}
	return b, nil
}

// GetRange implements Store.
func (s *FileStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := checkRange(off, n); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapFileErr(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if off >= st.Size() {
		return nil, fmt.Errorf("get %s: %w: offset %d of %d bytes", key, ErrInvalidRange, off, st.Size())
	}
	b := make([]byte, min(n, st.Size()-off))
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

// Head implements Store.
func (s *FileStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", key, mapFileErr(err))
	}
	if st.IsDir() {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List implements Store. It walks only the directory that holds the prefix.
func (s *FileStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	start := s.dir
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(s.dir, filepath.FromSlash(prefix[:i]))
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.dir, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip directories that cannot hold a matching key.
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) || strings.HasPrefix(path.Base(key), tempPrefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while listing
			}
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, mapFileErr(err))
	}
	return nil
}

// Clock implements Store: a file's modification time is set by this machine's clock.
func (s *FileStore) Clock(ctx context.Context) (time.Time, error) {
	return time.Now(), ctx.Err()
}

// Check implements Store: the directory exists and accepts files.
func (s *FileStore) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := os.Stat(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("check %s: %w (%w)", s, ErrNoBucket, err)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", s, mapFileErr(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("check %s: %w: not a directory", s, ErrNoBucket)
	}
	f, err := os.CreateTemp(s.dir, tempPrefix+"check-*")
	if err != nil {
		return fmt.Errorf("check %s: %w", s, mapFileErr(err))
	}
	_ = f.Close()
	return os.Remove(f.Name())
}

// mapFileErr turns file-system errors into the package's sentinels, keeping the original.
func mapFileErr(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (%w)", ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (%w)", ErrAuth, err)
	}
	return err
}
